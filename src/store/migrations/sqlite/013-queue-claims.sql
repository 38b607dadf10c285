-- Claims on queued work, so several control-plane processes can share one database: a process
-- takes a delivery for intake, or a GitHub job to run, by writing its claim (a token of its own
-- and the end of its lease) in the statement that picks it. No other process takes that work
-- until the lease ends; the claimant renews it while the work runs, so a process that dies gives
-- its work back within one lease. Back-off after a failure stays in not_before.
ALTER TABLE deliveries ADD COLUMN claimed_by TEXT;
ALTER TABLE deliveries ADD COLUMN claimed_until TEXT;
ALTER TABLE github_jobs ADD COLUMN claimed_by TEXT;
ALTER TABLE github_jobs ADD COLUMN claimed_until TEXT;
-- Intake takes the oldest pending delivery whose repository has none in intake: it walks pending
-- deliveries in order (this index replaces deliveries_pending, whose order the planners would
-- sort again) and looks each one's repository up among the few claimed.
DROP INDEX deliveries_pending;
CREATE INDEX deliveries_waiting ON deliveries (received_at, delivery_id) WHERE status = 'pending';
CREATE INDEX deliveries_in_intake ON deliveries (repo_full_name, claimed_until) WHERE claimed_until IS NOT NULL;
-- GitHub jobs are claimed one at a time, oldest first: pending ones in id order. A tracking or
-- check-run job is coalesced into one of its task's waiting for a first attempt: found by task.
DROP INDEX github_jobs_pending;
CREATE INDEX github_jobs_waiting ON github_jobs (id) WHERE status = 'pending';
CREATE INDEX github_jobs_task ON github_jobs (task_id, kind) WHERE status = 'pending';
-- Dispatch takes the oldest waiting delivery, ties broken by id, one at a time.
DROP INDEX webhook_inbox_waiting;
CREATE INDEX webhook_inbox_waiting ON webhook_inbox (received_at, delivery_id) WHERE dispatched_at IS NULL;
