-- Where a task's workspace starts is decided at intake and stored on the task (start_json), apart
-- from why the task exists (kind). Existing rows get the start their runner used to derive:
-- a fork pull request's head, the branch a follow-up or CI fix continues, a retry's continued
-- branch (its branch was not named after itself), or a new branch from the base.
ALTER TABLE tasks ADD COLUMN start_json TEXT NOT NULL DEFAULT '{}';

UPDATE tasks SET start_json = CASE
  WHEN json_extract(context_json, '$.startFrom') IS NOT NULL
    THEN json_object('from', 'pull_head', 'pull',
      CAST(substr(json_extract(context_json, '$.startFrom'), 11,
        length(json_extract(context_json, '$.startFrom')) - 15) AS INTEGER))
  WHEN kind IN ('follow_up', 'ci_fix') THEN json_object('from', 'own_branch')
  WHEN kind = 'retry' AND instr(branch, id) = 0 THEN json_object('from', 'own_branch')
  ELSE json_object('from', 'ref', 'ref', COALESCE(base_ref, 'main'))
END;

-- Context keys that lived outside the context's schema move into it: local mode's requester and
-- path under `local`, the fork start ref into start_json (above).
UPDATE tasks SET context_json = json_set(
    json_remove(context_json, '$.coAuthor', '$.localPath'),
    '$.local', json_object('coAuthor', json_extract(context_json, '$.coAuthor'),
                           'path', COALESCE(json_extract(context_json, '$.localPath'), ''))
  )
  WHERE json_extract(context_json, '$.coAuthor') IS NOT NULL;
UPDATE tasks SET context_json = json_remove(context_json, '$.startFrom')
  WHERE json_extract(context_json, '$.startFrom') IS NOT NULL;

-- The issue or pull request text a task was asked about, frozen when the request was accepted
-- (title, body and the comments up to the trigger, with their ids and edit times).
ALTER TABLE tasks ADD COLUMN thread_json TEXT;

-- One retry policy for every durable queue: a failed delivery waits until not_before, like a
-- failed GitHub job.
ALTER TABLE deliveries ADD COLUMN not_before TEXT;
DROP INDEX IF EXISTS deliveries_pending;
CREATE INDEX deliveries_pending ON deliveries (status, not_before, received_at);

-- A captured signed body re-posted under a new delivery id is the same request: deduplicated by
-- the body's digest as well as by id, for as long as the inbox keeps the row.
ALTER TABLE webhook_inbox ADD COLUMN body_sha256 TEXT;
CREATE UNIQUE INDEX webhook_inbox_body ON webhook_inbox (body_sha256) WHERE body_sha256 IS NOT NULL;

-- Rechecking CI when a task ends is a GitHub job now, not a delivery made up by airlock: pending
-- made-up deliveries are closed (the job is queued again by the next task to end on the branch).
UPDATE deliveries SET status = 'ignored', outcome = 'superseded by the ci_recheck job', processed_at = received_at
  WHERE status = 'pending' AND json_extract(intent_json, '$.source') = 'task_finished';
