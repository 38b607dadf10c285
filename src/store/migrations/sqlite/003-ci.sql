-- CI verdicts on agent branches: one row per head commit, so repeated check events act once.
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
