-- Accounts: users, server-side sessions (and pre-sessions), rate-limit windows.
CREATE TABLE users (
    id               BLOB PRIMARY KEY NOT NULL,
    email            TEXT NOT NULL,
    username         TEXT NOT NULL,
    display_name     TEXT NOT NULL,
    password_hash    TEXT NOT NULL,
    failed_logins    INTEGER NOT NULL DEFAULT 0,
    locked_until     TEXT,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
) STRICT;
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE UNIQUE INDEX users_username_key ON users (lower(username));

CREATE TABLE sessions (
    id            BLOB PRIMARY KEY NOT NULL,
    token_hash    BLOB NOT NULL,
    user_id       BLOB REFERENCES users (id) ON DELETE CASCADE,
    csrf_secret   BLOB NOT NULL,
    user_agent    TEXT,
    created_at    TEXT NOT NULL,
    last_seen_at  TEXT NOT NULL,
    expires_at    TEXT NOT NULL
) STRICT;
CREATE UNIQUE INDEX sessions_token_hash_key ON sessions (token_hash);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);

CREATE TABLE rate_limits (
    action          TEXT NOT NULL,
    key_hash        BLOB NOT NULL,
    count           INTEGER NOT NULL,
    window_ends_at  TEXT NOT NULL,
    PRIMARY KEY (action, key_hash)
) STRICT;
CREATE INDEX rate_limits_window_ends_at_idx ON rate_limits (window_ends_at);
