-- Security: the server's secret (keyed hashes and signed cookies), sign-in guards that treat unknown
-- identifiers like known ones and count trusted browsers (device cookies) apart from everyone else.

CREATE TABLE server_secrets (
    name        TEXT PRIMARY KEY NOT NULL,
    secret      BLOB NOT NULL,
    created_at  TEXT NOT NULL
) STRICT;

-- A failure count and lock per sign-in identifier (as typed, any case) or per device cookie, keyed by a
-- keyed hash. user_id names the account when there is one (so unlocking and deleting find its rows).
CREATE TABLE login_guards (
    key_hash      BLOB PRIMARY KEY NOT NULL,
    user_id       BLOB REFERENCES users (id) ON DELETE CASCADE,
    failures      INTEGER NOT NULL,
    locked_until  TEXT,
    expires_at    TEXT NOT NULL
) STRICT;
CREATE INDEX login_guards_user_id_idx ON login_guards (user_id);
CREATE INDEX login_guards_expires_at_idx ON login_guards (expires_at);

-- Locks moved to login_guards.
ALTER TABLE users DROP COLUMN failed_logins;
ALTER TABLE users DROP COLUMN locked_until;

-- Anonymous visitors' CSRF secrets now live in signed cookies, not in rows.
DELETE FROM sessions WHERE user_id IS NULL;

-- Rate-limit keys are now keyed hashes: windows under the old plain hashes would never be hit again.
DELETE FROM rate_limits;
