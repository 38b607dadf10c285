-- Workers lease the tasks they run (issue 16): a task being run names the worker holding it and
-- when that lease ends unless renewed. A lease that ends unrenewed (the worker was killed or lost
-- its host) hands the task to the same rules as a restart.
ALTER TABLE tasks ADD COLUMN lease_owner TEXT;
ALTER TABLE tasks ADD COLUMN lease_expires_at TEXT;
-- Who asked to cancel a running task: the worker running it stops it (told by a notification,
-- and on its next heartbeat if the notification was missed).
ALTER TABLE tasks ADD COLUMN cancel_requested_by TEXT;
CREATE INDEX tasks_lease ON tasks (lease_owner) WHERE lease_owner IS NOT NULL;

-- Every worker process that has run: who it is, where, how much it may run, when it last said so.
CREATE TABLE workers (
  id           TEXT PRIMARY KEY,
  host         TEXT NOT NULL,
  pid          INTEGER NOT NULL,
  capacity     INTEGER NOT NULL,
  started_at   TEXT NOT NULL,
  heartbeat_at TEXT NOT NULL,
  stopped_at   TEXT
);
