-- Accounts: users, server-side sessions (and pre-sessions), rate-limit windows.
CREATE TABLE users (
    id               UUID PRIMARY KEY,
    email            TEXT NOT NULL,
    username         TEXT NOT NULL,
    display_name     TEXT NOT NULL,
    password_hash    TEXT NOT NULL,
    failed_logins    BIGINT NOT NULL DEFAULT 0,
    locked_until     TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE UNIQUE INDEX users_username_key ON users (lower(username));

CREATE TABLE sessions (
    id            UUID PRIMARY KEY,
    token_hash    BYTEA NOT NULL,
    user_id       UUID REFERENCES users (id) ON DELETE CASCADE,
    csrf_secret   BYTEA NOT NULL,
    user_agent    TEXT,
    created_at    TIMESTAMPTZ NOT NULL,
    last_seen_at  TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL
);
CREATE UNIQUE INDEX sessions_token_hash_key ON sessions (token_hash);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);

CREATE TABLE rate_limits (
    action          TEXT NOT NULL,
    key_hash        BYTEA NOT NULL,
    count           BIGINT NOT NULL,
    window_ends_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (action, key_hash)
);
CREATE INDEX rate_limits_window_ends_at_idx ON rate_limits (window_ends_at);
