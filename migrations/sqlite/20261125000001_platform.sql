-- Platform: leases that let exactly one instance run each periodic job (purges, image cleanup) at a time.
CREATE TABLE job_leases (
    name         TEXT PRIMARY KEY NOT NULL,
    holder       TEXT NOT NULL,
    leased_until TEXT NOT NULL,
    last_run_at  TEXT
) STRICT;
