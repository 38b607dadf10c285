-- Claims on queued work, so several control-plane processes can share one database: a process
-- takes a delivery for intake, or a GitHub job to run, by writing its claim (a token of its own
-- and the end of its lease) in the statement that picks it. No other process takes that work
-- until the lease ends; the claimant renews it while the work runs, so a process that dies gives
-- its work back within one lease. Back-off after a failure stays in not_before.
ALTER TABLE deliveries ADD COLUMN claimed_by TEXT;
ALTER TABLE deliveries ADD COLUMN claimed_until TEXT;
ALTER TABLE github_jobs ADD COLUMN claimed_by TEXT;
ALTER TABLE github_jobs ADD COLUMN claimed_until TEXT;
