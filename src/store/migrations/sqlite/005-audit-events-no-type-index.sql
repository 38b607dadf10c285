-- Nothing reads audit events by type across tasks (every reader goes by task, through the primary
-- key), and the index cost every append a third more page writes. Measured by `npm run bench -- audit`.
DROP INDEX IF EXISTS audit_events_type;
