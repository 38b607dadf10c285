-- Verified deliveries exactly as GitHub sent them, stored before GitHub gets its answer. The
-- dispatcher hands each to Probot afterwards (which turns it into an intent in `deliveries`) and
-- then drops the body; the row stays, so a redelivery of the same id is answered without being
-- stored or dispatched twice.
CREATE TABLE webhook_inbox (
  delivery_id   TEXT PRIMARY KEY,
  event         TEXT NOT NULL,
  payload       TEXT,
  received_at   TEXT NOT NULL,
  dispatched_at TEXT,
  attempts      INTEGER NOT NULL DEFAULT 0,
  error         TEXT
);
CREATE INDEX webhook_inbox_waiting ON webhook_inbox (received_at) WHERE dispatched_at IS NULL;
