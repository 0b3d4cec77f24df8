-- PostgreSQL's run-change notifications say what changed when a follower can apply it without a read (the
-- relay between instances). SQLite has one instance and no relay: nothing changes here; the version exists
-- so both backends keep the same list of migrations.
SELECT 1;
