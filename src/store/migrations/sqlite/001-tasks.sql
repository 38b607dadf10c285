-- Tasks: one row per unit of agent work. State transitions are written here before they are acted on.
CREATE TABLE tasks (
  id                  TEXT PRIMARY KEY,
  installation_id     INTEGER,
  repo_full_name      TEXT NOT NULL,
  repo_id             INTEGER,
  issue_number        INTEGER,
  pr_number           INTEGER,
  kind                TEXT NOT NULL CHECK (kind IN ('issue', 'follow_up', 'ci_fix', 'retry', 'local')),
  state               TEXT NOT NULL CHECK (state IN ('queued', 'starting', 'running', 'pushing', 'succeeded', 'failed', 'cancelled', 'timed_out')),
  reason              TEXT,
  branch              TEXT NOT NULL,
  base_ref            TEXT,
  actor_login         TEXT NOT NULL,
  actor_id            INTEGER,
  trigger_event       TEXT NOT NULL,
  trigger_url         TEXT,
  delivery_id         TEXT,
  instruction         TEXT,
  context_json        TEXT NOT NULL DEFAULT '{}',
  config_json         TEXT NOT NULL DEFAULT '{}',
  parent_task_id      TEXT REFERENCES tasks (id),
  attempt             INTEGER NOT NULL DEFAULT 1,
  tracking_comment_id INTEGER,
  check_run_id        INTEGER,
  head_sha            TEXT,
  result_json         TEXT,
  created_at          TEXT NOT NULL,
  updated_at          TEXT NOT NULL,
  started_at          TEXT,
  finished_at         TEXT
);
CREATE INDEX tasks_state ON tasks (state, created_at);
CREATE INDEX tasks_repo ON tasks (repo_full_name, created_at);
CREATE INDEX tasks_branch ON tasks (repo_full_name, branch, created_at);
CREATE INDEX tasks_actor ON tasks (actor_login, created_at);
CREATE UNIQUE INDEX tasks_delivery ON tasks (delivery_id) WHERE delivery_id IS NOT NULL;

-- Webhook deliveries, deduplicated by GitHub's delivery id. A delivery is stored (with the intent
-- parsed from it) before GitHub gets its answer, and processed afterwards by the intake worker.
CREATE TABLE deliveries (
  delivery_id   TEXT PRIMARY KEY,
  event         TEXT NOT NULL,
  action        TEXT,
  installation_id INTEGER,
  repo_full_name TEXT,
  intent_json   TEXT NOT NULL,
  status        TEXT NOT NULL CHECK (status IN ('pending', 'done', 'ignored', 'refused', 'failed')),
  outcome       TEXT,
  task_id       TEXT,
  attempts      INTEGER NOT NULL DEFAULT 0,
  received_at   TEXT NOT NULL,
  processed_at  TEXT
);
CREATE INDEX deliveries_pending ON deliveries (status, received_at);

-- Durable GitHub side effects (reactions, comments, check runs, PRs), retried until done.
CREATE TABLE github_jobs (
  id            INTEGER PRIMARY KEY AUTOINCREMENT,
  task_id       TEXT,
  delivery_id   TEXT,
  kind          TEXT NOT NULL,
  payload_json  TEXT NOT NULL,
  status        TEXT NOT NULL CHECK (status IN ('pending', 'done', 'failed')),
  attempts      INTEGER NOT NULL DEFAULT 0,
  not_before    TEXT NOT NULL,
  last_error    TEXT,
  created_at    TEXT NOT NULL,
  done_at       TEXT
);
CREATE INDEX github_jobs_pending ON github_jobs (status, not_before);
