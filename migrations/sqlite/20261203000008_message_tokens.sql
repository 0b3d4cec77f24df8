-- What a message costs in a prompt (chat::prompt::estimate_tokens), counted once when it is written, so
-- building the next prompt does not tokenize the whole history again. NULL for messages written before this;
-- those are counted when a prompt needs them.
ALTER TABLE messages ADD COLUMN tokens INTEGER;
