-- Environments are made per host: a snapshot restores only where it was frozen (that host's data
-- directory, image and QEMU). With several workers each builds its own, and `host` names it
-- (AIRLOCK_WORKER_NAME). NULL: made by an airlock on one host, or a build any worker may take.
ALTER TABLE environment_builds ADD COLUMN host TEXT;
-- Renewed by the worker running the build: a build whose worker went away is failed by a sweep.
ALTER TABLE environment_builds ADD COLUMN heartbeat_at TEXT;
ALTER TABLE environments ADD COLUMN host TEXT;
CREATE INDEX environments_host ON environments (host, repo_full_name, state);

-- A build's log, in chunks as its commands print (capped): whichever process serves the web UI
-- shows it, live, wherever the build runs.
CREATE TABLE environment_build_logs (
  build_id TEXT NOT NULL,
  seq      INTEGER NOT NULL,
  chunk    TEXT NOT NULL,
  PRIMARY KEY (build_id, seq)
);
