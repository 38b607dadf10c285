-- A task may wait for a person's approval: `awaiting_approval` joins the states the CHECK allows.
-- SQLite cannot change a CHECK in place, so the table is rebuilt (the documented way: new table,
-- copy, drop, rename; foreign keys that name `tasks` are checked at commit, when it exists again).
PRAGMA defer_foreign_keys = ON;
CREATE TABLE tasks_rebuilt (
  id                  TEXT PRIMARY KEY,
  installation_id     INTEGER,
  repo_full_name      TEXT NOT NULL,
  repo_id             INTEGER,
  issue_number        INTEGER,
  pr_number           INTEGER,
  kind                TEXT NOT NULL CHECK (kind IN ('issue', 'follow_up', 'ci_fix', 'retry', 'local')),
  state               TEXT NOT NULL CHECK (state IN ('awaiting_approval', 'queued', 'starting', 'running', 'pushing', 'succeeded', 'failed', 'cancelled', 'timed_out')),
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
  finished_at         TEXT,
  start_json          TEXT NOT NULL DEFAULT '{}',
  thread_json         TEXT
);
INSERT INTO tasks_rebuilt (id, installation_id, repo_full_name, repo_id, issue_number, pr_number, kind, state, reason, branch, base_ref, actor_login, actor_id, trigger_event, trigger_url, delivery_id, instruction, context_json, config_json, parent_task_id, attempt, tracking_comment_id, check_run_id, head_sha, result_json, created_at, updated_at, started_at, finished_at, start_json, thread_json)
  SELECT id, installation_id, repo_full_name, repo_id, issue_number, pr_number, kind, state, reason, branch, base_ref, actor_login, actor_id, trigger_event, trigger_url, delivery_id, instruction, context_json, config_json, parent_task_id, attempt, tracking_comment_id, check_run_id, head_sha, result_json, created_at, updated_at, started_at, finished_at, start_json, thread_json FROM tasks;
DROP TABLE tasks;
ALTER TABLE tasks_rebuilt RENAME TO tasks;
CREATE INDEX tasks_state ON tasks (state, created_at);
CREATE INDEX tasks_repo ON tasks (repo_full_name, created_at);
CREATE INDEX tasks_branch ON tasks (repo_full_name, branch, created_at);
CREATE INDEX tasks_actor ON tasks (actor_login, created_at);
CREATE UNIQUE INDEX tasks_delivery ON tasks (delivery_id) WHERE delivery_id IS NOT NULL;

-- Approval gates. A task waits in `awaiting_approval` (a state of `tasks`) while one of its
-- approvals is pending: `run` (before it runs: the frozen thread it would read) or `push` (before
-- its held result goes to GitHub). `shown_json` is exactly what an approver is shown, and
-- `shown_digest` its sha256: a decision records the digest of what the approver saw, and the
-- task's audit chain records the same decision (`approval.decided`), which `airlock audit verify`
-- checks against these rows.
CREATE TABLE approvals (
  id            INTEGER PRIMARY KEY,
  task_id       TEXT NOT NULL REFERENCES tasks (id),
  gate          TEXT NOT NULL CHECK (gate IN ('run', 'push')),
  state         TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'approved', 'rejected', 'expired', 'withdrawn')),
  why           TEXT NOT NULL,
  shown_json    TEXT NOT NULL,
  shown_digest  TEXT NOT NULL,
  requested_at  TEXT NOT NULL,
  expires_at    TEXT NOT NULL,
  decided_by    TEXT,
  decided_by_id INTEGER,
  decided_at    TEXT,
  channel       TEXT CHECK (channel IS NULL OR channel IN ('comment', 'web', 'expiry', 'cancel')),
  -- A pushed result released once: the approved push is started by the scheduler, and done once.
  released_at   TEXT
);
CREATE UNIQUE INDEX approvals_one_pending ON approvals (task_id) WHERE state = 'pending';
CREATE INDEX approvals_task ON approvals (task_id, id);
CREATE INDEX approvals_expiring ON approvals (expires_at) WHERE state = 'pending';

-- A result held on the host until its push is approved: the host-side bare repository the task's
-- proxy received the push into, a git bundle of it, and what the host computed from it (the base
-- it was compared with, the head, the diff). Discarded (files deleted, `discarded_at` set) on
-- rejection or expiry; the row stays as the record of what was held.
CREATE TABLE held_results (
  task_id      TEXT PRIMARY KEY REFERENCES tasks (id),
  base_sha     TEXT,
  head_sha     TEXT NOT NULL,
  repo_path    TEXT NOT NULL,
  bundle_path  TEXT NOT NULL,
  bundle_sha256 TEXT NOT NULL,
  diff_stat    TEXT NOT NULL,
  patch        TEXT NOT NULL,
  patch_truncated INTEGER NOT NULL DEFAULT 0,
  files_json   TEXT NOT NULL,
  held_at      TEXT NOT NULL,
  discarded_at TEXT
);

-- Model spend, one row per task and model, written when the task's proxy closes: the tokens the
-- proxy counted and their cost at the policy's price for that model (NULL when unpriced). `month`
-- is the UTC month the spend counts towards (YYYY-MM), for the monthly caps.
CREATE TABLE task_spend (
  task_id        TEXT NOT NULL REFERENCES tasks (id),
  model          TEXT NOT NULL,
  repo_full_name TEXT NOT NULL,
  owner          TEXT NOT NULL,
  month          TEXT NOT NULL,
  input_tokens   INTEGER NOT NULL,
  output_tokens  INTEGER NOT NULL,
  cost_usd       REAL,
  recorded_at    TEXT NOT NULL,
  PRIMARY KEY (task_id, model)
);
CREATE INDEX task_spend_repo_month ON task_spend (repo_full_name COLLATE NOCASE, month);
CREATE INDEX task_spend_owner_month ON task_spend (owner COLLATE NOCASE, month);
