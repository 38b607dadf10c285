-- airlock's schema on PostgreSQL: the tables SQLite reaches through migrations 001–009, in one
-- step. Column types match SQLite's (text times and JSON, bigint numbers), so one row parser
-- serves both. Later migrations come in pairs, one file in each dialect's folder.

CREATE TABLE tasks (
  id                  TEXT PRIMARY KEY,
  installation_id     BIGINT,
  repo_full_name      TEXT NOT NULL,
  repo_id             BIGINT,
  issue_number        BIGINT,
  pr_number           BIGINT,
  kind                TEXT NOT NULL CHECK (kind IN ('issue', 'follow_up', 'ci_fix', 'retry', 'local')),
  state               TEXT NOT NULL CHECK (state IN ('awaiting_approval', 'queued', 'starting', 'running', 'pushing', 'succeeded', 'failed', 'cancelled', 'timed_out')),
  reason              TEXT,
  branch              TEXT NOT NULL,
  base_ref            TEXT,
  actor_login         TEXT NOT NULL,
  actor_id            BIGINT,
  trigger_event       TEXT NOT NULL,
  trigger_url         TEXT,
  delivery_id         TEXT,
  instruction         TEXT,
  context_json        TEXT NOT NULL DEFAULT '{}',
  config_json         TEXT NOT NULL DEFAULT '{}',
  parent_task_id      TEXT REFERENCES tasks (id),
  attempt             BIGINT NOT NULL DEFAULT 1,
  tracking_comment_id BIGINT,
  check_run_id        BIGINT,
  head_sha            TEXT,
  result_json         TEXT,
  created_at          TEXT NOT NULL,
  updated_at          TEXT NOT NULL,
  started_at          TEXT,
  finished_at         TEXT,
  start_json          TEXT NOT NULL DEFAULT '{}',
  thread_json         TEXT
);
CREATE INDEX tasks_actor ON tasks (actor_login, created_at);
CREATE INDEX tasks_branch ON tasks (repo_full_name, branch, created_at);
CREATE UNIQUE INDEX tasks_delivery ON tasks (delivery_id) WHERE delivery_id IS NOT NULL;
CREATE INDEX tasks_repo ON tasks (repo_full_name, created_at);
CREATE INDEX tasks_state ON tasks (state, created_at);

CREATE TABLE audit_events (
  task_id   TEXT NOT NULL,
  seq       BIGINT NOT NULL,
  ts        TEXT NOT NULL,
  type      TEXT NOT NULL,
  data_json TEXT NOT NULL,
  prev_hash TEXT NOT NULL,
  hash      TEXT NOT NULL,
  PRIMARY KEY (task_id, seq)
);

CREATE TABLE audit_payloads (
  task_id   TEXT NOT NULL,
  seq       BIGINT NOT NULL,
  data_json TEXT NOT NULL,
  PRIMARY KEY (task_id, seq)
);

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit events are append-only';
END $$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();

CREATE FUNCTION audit_payloads_never_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit payloads cannot be changed, only purged (airlock audit purge)';
END $$;
CREATE TRIGGER audit_payloads_never_change BEFORE UPDATE ON audit_payloads
  FOR EACH ROW EXECUTE FUNCTION audit_payloads_never_change();

CREATE FUNCTION audit_payloads_purge_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NOT EXISTS (
    SELECT 1 FROM audit_events p, jsonb_array_elements_text(p.data_json::jsonb -> 'purged') AS j (v)
    WHERE p.task_id = OLD.task_id AND p.type = 'audit.purged' AND p.seq > OLD.seq AND j.v::bigint = OLD.seq
  ) THEN
    RAISE EXCEPTION 'an audit payload can be deleted only after its task''s chain records the purge (airlock audit purge)';
  END IF;
  RETURN OLD;
END $$;
CREATE TRIGGER audit_payloads_purge_only BEFORE DELETE ON audit_payloads
  FOR EACH ROW EXECUTE FUNCTION audit_payloads_purge_only();

CREATE TABLE ci_verdicts (
  repo_full_name TEXT NOT NULL,
  branch         TEXT NOT NULL,
  head_sha       TEXT NOT NULL,
  task_id        TEXT NOT NULL REFERENCES tasks (id),
  verdict        TEXT NOT NULL CHECK (verdict IN ('passed', 'failed')),
  action         TEXT NOT NULL,
  fingerprint    TEXT,
  detail_json    TEXT NOT NULL DEFAULT '{}',
  decided_at     TEXT NOT NULL,
  PRIMARY KEY (repo_full_name, head_sha)
);
CREATE INDEX ci_verdicts_branch ON ci_verdicts (repo_full_name, branch, decided_at);

CREATE TABLE deliveries (
  delivery_id     TEXT PRIMARY KEY,
  event           TEXT NOT NULL,
  action          TEXT,
  installation_id BIGINT,
  repo_full_name  TEXT,
  intent_json     TEXT NOT NULL,
  status          TEXT NOT NULL CHECK (status IN ('pending', 'done', 'ignored', 'refused', 'failed')),
  outcome         TEXT,
  task_id         TEXT,
  attempts        BIGINT NOT NULL DEFAULT 0,
  received_at     TEXT NOT NULL,
  processed_at    TEXT,
  not_before      TEXT
);
CREATE INDEX deliveries_pending ON deliveries (status, not_before, received_at);

CREATE TABLE webhook_inbox (
  delivery_id   TEXT PRIMARY KEY,
  event         TEXT NOT NULL,
  payload       TEXT,
  received_at   TEXT NOT NULL,
  dispatched_at TEXT,
  attempts      BIGINT NOT NULL DEFAULT 0,
  error         TEXT,
  body_sha256   TEXT
);
CREATE UNIQUE INDEX webhook_inbox_body ON webhook_inbox (body_sha256) WHERE body_sha256 IS NOT NULL;
CREATE INDEX webhook_inbox_waiting ON webhook_inbox (received_at) WHERE dispatched_at IS NULL;

CREATE TABLE github_jobs (
  id            BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
  task_id       TEXT,
  delivery_id   TEXT,
  kind          TEXT NOT NULL,
  payload_json  TEXT NOT NULL,
  status        TEXT NOT NULL CHECK (status IN ('pending', 'done', 'failed')),
  attempts      BIGINT NOT NULL DEFAULT 0,
  not_before    TEXT NOT NULL,
  last_error    TEXT,
  created_at    TEXT NOT NULL,
  done_at       TEXT
);
CREATE INDEX github_jobs_pending ON github_jobs (status, not_before);

CREATE TABLE approvals (
  id            BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
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
  decided_by_id BIGINT,
  decided_at    TEXT,
  channel       TEXT CHECK (channel IS NULL OR channel IN ('comment', 'web', 'expiry', 'cancel')),
  released_at   TEXT
);
CREATE INDEX approvals_expiring ON approvals (expires_at) WHERE state = 'pending';
CREATE UNIQUE INDEX approvals_one_pending ON approvals (task_id) WHERE state = 'pending';
CREATE INDEX approvals_task ON approvals (task_id, id);

CREATE TABLE held_results (
  task_id         TEXT PRIMARY KEY REFERENCES tasks (id),
  base_sha        TEXT,
  head_sha        TEXT NOT NULL,
  repo_path       TEXT NOT NULL,
  bundle_path     TEXT NOT NULL,
  bundle_sha256   TEXT NOT NULL,
  diff_stat       TEXT NOT NULL,
  patch           TEXT NOT NULL,
  patch_truncated BIGINT NOT NULL DEFAULT 0,
  files_json      TEXT NOT NULL,
  held_at         TEXT NOT NULL,
  discarded_at    TEXT
);

CREATE TABLE task_spend (
  task_id        TEXT NOT NULL REFERENCES tasks (id),
  model          TEXT NOT NULL,
  repo_full_name TEXT NOT NULL,
  owner          TEXT NOT NULL,
  month          TEXT NOT NULL,
  input_tokens   BIGINT NOT NULL,
  output_tokens  BIGINT NOT NULL,
  cost_usd       DOUBLE PRECISION,
  recorded_at    TEXT NOT NULL,
  PRIMARY KEY (task_id, model)
);
CREATE INDEX task_spend_owner_month ON task_spend (lower(owner), month);
CREATE INDEX task_spend_repo_month ON task_spend (lower(repo_full_name), month);

CREATE TABLE environment_builds (
  id              TEXT PRIMARY KEY,
  repo_full_name  TEXT NOT NULL,
  repo_id         BIGINT,
  installation_id BIGINT,
  state           TEXT NOT NULL,
  reason          TEXT,
  trigger_json    TEXT NOT NULL,
  config_json     TEXT NOT NULL,
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
  spec_hash       TEXT NOT NULL,
  env_key         TEXT NOT NULL,
  commit_sha      TEXT NOT NULL,
  dir             TEXT NOT NULL,
  size_bytes      BIGINT NOT NULL,
  state           TEXT NOT NULL,
  created_at      TEXT NOT NULL,
  last_used_at    TEXT NOT NULL,
  collected_at    TEXT,
  collected_why   TEXT
);
CREATE INDEX environments_repo ON environments (repo_full_name, state, created_at);
