-- Chat: the conversation with each companion, and the durable runs that produce replies.
CREATE TABLE messages (
    id            UUID PRIMARY KEY,
    companion_id  UUID NOT NULL REFERENCES companions (id) ON DELETE CASCADE,
    role          TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
    content       TEXT NOT NULL,
    image_id      UUID REFERENCES images (id) ON DELETE SET NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    edited_at     TIMESTAMPTZ
);
CREATE INDEX messages_companion_created_idx ON messages (companion_id, created_at DESC, id DESC);

CREATE TABLE chat_runs (
    id                    UUID PRIMARY KEY,
    companion_id          UUID NOT NULL REFERENCES companions (id) ON DELETE CASCADE,
    user_id               UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_message_id       UUID NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    replaces_message_id   UUID REFERENCES messages (id) ON DELETE SET NULL,
    assistant_message_id  UUID REFERENCES messages (id) ON DELETE SET NULL,
    client_request_id     TEXT,
    generate_image        BOOLEAN NOT NULL,
    status                TEXT NOT NULL CHECK (status IN ('queued', 'responding', 'analyzing', 'imaging',
                                                          'completed', 'failed', 'cancelled')),
    step                  TEXT NOT NULL,
    progress              INTEGER NOT NULL,
    partial_text          TEXT NOT NULL,
    -- Which version of the reply text the byte offsets refer to: '' for the first, bumped by every reset.
    text_epoch            TEXT NOT NULL DEFAULT '',
    state_after           JSONB,
    error_code            TEXT,
    error_message         TEXT,
    retryable             BOOLEAN NOT NULL,
    attempts              INTEGER NOT NULL,
    correlation_id        TEXT NOT NULL,
    lease_owner           TEXT,
    lease_until           TIMESTAMPTZ,
    deadline_at           TIMESTAMPTZ NOT NULL,
    created_at            TIMESTAMPTZ NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL,
    finished_at           TIMESTAMPTZ
);
-- One unfinished run per companion, enforced by the database (a second send is refused atomically).
CREATE UNIQUE INDEX chat_runs_one_active_idx ON chat_runs (companion_id)
    WHERE status IN ('queued', 'responding', 'analyzing', 'imaging');
CREATE UNIQUE INDEX chat_runs_client_request_idx ON chat_runs (user_id, client_request_id)
    WHERE client_request_id IS NOT NULL;
CREATE INDEX chat_runs_status_idx ON chat_runs (status, lease_until);
CREATE INDEX chat_runs_companion_created_idx ON chat_runs (companion_id, created_at DESC, id DESC);
