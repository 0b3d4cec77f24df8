-- Companions (structured profile as a validated JSON document, live state) and stored images.
CREATE TABLE companions (
    id                 BLOB PRIMARY KEY NOT NULL,
    user_id            BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    profile            TEXT NOT NULL,
    live_state         TEXT NOT NULL,
    portrait_image_id  BLOB REFERENCES images (id) ON DELETE SET NULL,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL
) STRICT;
CREATE INDEX companions_user_created_idx ON companions (user_id, created_at DESC, id DESC);

CREATE TABLE images (
    id            BLOB PRIMARY KEY NOT NULL,
    owner_id      BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    companion_id  BLOB REFERENCES companions (id) ON DELETE CASCADE,
    storage_key   TEXT NOT NULL,
    mime          TEXT NOT NULL,
    width         INTEGER NOT NULL,
    height        INTEGER NOT NULL,
    bytes         INTEGER NOT NULL,
    source        TEXT NOT NULL CHECK (source IN ('portrait', 'chat', 'generator')),
    prompt        TEXT,
    created_at    TEXT NOT NULL
) STRICT;
CREATE INDEX images_owner_created_idx ON images (owner_id, created_at DESC, id DESC);
CREATE INDEX images_companion_created_idx ON images (companion_id, created_at DESC, id DESC);
CREATE INDEX images_storage_key_idx ON images (storage_key);
