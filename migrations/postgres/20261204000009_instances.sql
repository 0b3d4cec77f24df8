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
