-- Instances: every serving process registers itself and beats its heart in database time, so others know
-- whether the holder of a run's lease is alive (a run held by a dead instance is taken over at once, without
-- waiting for its lease to lapse). `name` stays the same across restarts of one deployment slot
-- (INSTANCE_NAME, or host:port), so a restarted process takes over its earlier incarnation's runs at start.
CREATE TABLE instances (
    id            TEXT PRIMARY KEY NOT NULL,
    name          TEXT NOT NULL,
    host          TEXT NOT NULL,
    pid           BIGINT NOT NULL,
    started_at    TIMESTAMPTZ NOT NULL,
    heartbeat_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX instances_name_idx ON instances (name);
CREATE INDEX instances_heartbeat_idx ON instances (heartbeat_at);
CREATE INDEX chat_runs_lease_owner_idx ON chat_runs (lease_owner) WHERE lease_owner IS NOT NULL;

-- Every change of a run a subscriber sees announces itself, so an instance following a run executed
-- elsewhere reads it at once (engine::relay): no polling, no statement of the executor's own, the run id as
-- the payload. Lease renewals alone (lease_until) stay silent.
CREATE FUNCTION chat_run_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chat_run_changed', NEW.id::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER chat_runs_changed AFTER UPDATE ON chat_runs FOR EACH ROW
    WHEN (OLD.partial_text IS DISTINCT FROM NEW.partial_text
          OR OLD.text_epoch IS DISTINCT FROM NEW.text_epoch
          OR OLD.status IS DISTINCT FROM NEW.status
          OR OLD.step IS DISTINCT FROM NEW.step
          OR OLD.progress IS DISTINCT FROM NEW.progress
          OR OLD.state_after IS DISTINCT FROM NEW.state_after)
    EXECUTE FUNCTION chat_run_changed();
