-- Environments: a repository's toolchain and dependencies built once into a golden VM snapshot
-- (see docs/environments.md). A build is a durable job with its own hash-chained audit record
-- (its id is the chain's subject); an environment is the snapshot a succeeded build left.
CREATE TABLE environment_builds (
  id              TEXT PRIMARY KEY,
  repo_full_name  TEXT NOT NULL,
  repo_id         INTEGER,
  installation_id INTEGER,
  -- queued → running → succeeded | failed; never back.
  state           TEXT NOT NULL,
  reason          TEXT,
  -- Why it was built: {kind: task|push|command|age|config|local, by, taskId?, issueNumber?, url?}.
  trigger_json    TEXT NOT NULL,
  -- The repository's .github/airlock.yml as parsed when the build was asked for.
  config_json     TEXT NOT NULL,
  -- Filled in by the build: the commit it cloned, the key it computed, the environment it made.
  commit_sha      TEXT,
  env_key         TEXT,
  environment_id  TEXT,
  log_tail        TEXT,
  created_at      TEXT NOT NULL,
  started_at      TEXT,
  finished_at     TEXT
);
CREATE INDEX environment_builds_repo ON environment_builds (repo_full_name, created_at);
CREATE INDEX environment_builds_state ON environment_builds (state, created_at);

CREATE TABLE environments (
  id              TEXT PRIMARY KEY,
  repo_full_name  TEXT NOT NULL,
  build_id        TEXT NOT NULL REFERENCES environment_builds (id),
  -- sha256 of what the repository's config and the image ask for (packages, setup, shape, ...);
  -- env_key adds the content of the key files to it.
  spec_hash       TEXT NOT NULL,
  env_key         TEXT NOT NULL,
  commit_sha      TEXT NOT NULL,
  -- The snapshot directory under $AIRLOCK_DATA_DIR/environments (made atomically by the sandbox).
  dir             TEXT NOT NULL,
  size_bytes      INTEGER NOT NULL,
  -- ready: serves tasks; collected: its files were deleted (row kept for the record).
  state           TEXT NOT NULL,
  created_at      TEXT NOT NULL,
  last_used_at    TEXT NOT NULL,
  collected_at    TEXT,
  collected_why   TEXT
);
CREATE INDEX environments_repo ON environments (repo_full_name, state, created_at);
