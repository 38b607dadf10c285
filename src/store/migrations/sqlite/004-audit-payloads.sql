-- Prompt and model-response text lives beside the chain, not in it: the chained event stores the
-- text's sha256 (so the chain proves what was said), and the text itself is kept here until the
-- retention policy or an operator purges it. Payloads are never changed; a payload can be deleted
-- only once its task's own chain holds an `audit.purged` event, appended after it, that lists its
-- sequence number. That record is the deliberate, audited way past the append-only rule.
CREATE TABLE audit_payloads (
  task_id   TEXT NOT NULL,
  seq       INTEGER NOT NULL,
  data_json TEXT NOT NULL,
  PRIMARY KEY (task_id, seq)
) WITHOUT ROWID;

CREATE TRIGGER audit_payloads_never_change BEFORE UPDATE ON audit_payloads
BEGIN
  SELECT RAISE(ABORT, 'audit payloads cannot be changed, only purged (airlock audit purge)');
END;
CREATE TRIGGER audit_payloads_purge_only BEFORE DELETE ON audit_payloads
WHEN NOT EXISTS (
  SELECT 1 FROM audit_events p, json_each(p.data_json, '$.purged') j
  WHERE p.task_id = OLD.task_id AND p.type = 'audit.purged' AND p.seq > OLD.seq AND j.value = OLD.seq
)
BEGIN
  SELECT RAISE(ABORT, 'an audit payload can be deleted only after its task''s chain records the purge (airlock audit purge)');
END;
