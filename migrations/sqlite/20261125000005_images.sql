-- Images: generated pictures belong to the message they illustrate (and go with it); runs remember the
-- picture they made (or why they could not) until the reply is stored; a run may also only redo a picture.
ALTER TABLE images ADD COLUMN message_id BLOB REFERENCES messages (id) ON DELETE CASCADE;
CREATE INDEX images_message_idx ON images (message_id);
-- Gallery pages: a companion's pictures (or the unassigned ones) newest first by time-ordered id, without portraits.
CREATE INDEX images_gallery_idx ON images (owner_id, companion_id, id DESC) WHERE source <> 'portrait';

ALTER TABLE messages ADD COLUMN image_error TEXT;

ALTER TABLE chat_runs ADD COLUMN kind TEXT NOT NULL DEFAULT 'reply' CHECK (kind IN ('reply', 'image'));
ALTER TABLE chat_runs ADD COLUMN image_id BLOB REFERENCES images (id) ON DELETE SET NULL;
ALTER TABLE chat_runs ADD COLUMN image_error TEXT;
