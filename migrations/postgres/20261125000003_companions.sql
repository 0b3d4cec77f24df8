-- Companions (structured profile as a validated JSON document, live state) and stored images.
CREATE TABLE companions (
    id                 UUID PRIMARY KEY,
    user_id            UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    profile            JSONB NOT NULL,
    live_state         JSONB NOT NULL,
    portrait_image_id  UUID,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL
);
CREATE INDEX companions_user_created_idx ON companions (user_id, created_at DESC, id DESC);

CREATE TABLE images (
    id            UUID PRIMARY KEY,
    owner_id      UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    companion_id  UUID REFERENCES companions (id) ON DELETE CASCADE,
    storage_key   TEXT NOT NULL,
    mime          TEXT NOT NULL,
    width         INTEGER NOT NULL,
    height        INTEGER NOT NULL,
    bytes         BIGINT NOT NULL,
    source        TEXT NOT NULL CHECK (source IN ('portrait', 'chat', 'generator')),
    prompt        TEXT,
    created_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX images_owner_created_idx ON images (owner_id, created_at DESC, id DESC);
CREATE INDEX images_companion_created_idx ON images (companion_id, created_at DESC, id DESC);
CREATE INDEX images_storage_key_idx ON images (storage_key);
ALTER TABLE companions ADD CONSTRAINT companions_portrait_image_id_fkey
    FOREIGN KEY (portrait_image_id) REFERENCES images (id) ON DELETE SET NULL;
