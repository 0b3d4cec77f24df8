-- How a streamed reply ended ('stop', 'length', 'content_filter'): a reply cut at the token limit is kept
-- and marked, so it can be continued later. NULL for user messages and replies stored before this.
ALTER TABLE messages ADD COLUMN finish_reason TEXT;
ALTER TABLE chat_runs ADD COLUMN finish_reason TEXT;
