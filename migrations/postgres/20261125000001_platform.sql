-- Platform: leases that let exactly one instance run each periodic job (purges, image cleanup) at a time.
CREATE TABLE job_leases (
    name         TEXT PRIMARY KEY,
    holder       TEXT NOT NULL,
    leased_until TIMESTAMPTZ NOT NULL,
    last_run_at  TIMESTAMPTZ
);
