-- The W3C traceparent of a delivery's trace, carried from the webhook listener through the inbox
-- and the delivery log to intake (which may run in another process), so that one trace runs from
-- the delivery to the task it becomes. Null for rows stored before, and where no span was active.
ALTER TABLE webhook_inbox ADD COLUMN trace_parent TEXT;
ALTER TABLE deliveries ADD COLUMN trace_parent TEXT;
