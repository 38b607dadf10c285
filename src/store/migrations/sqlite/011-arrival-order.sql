-- Arrival order both databases keep. Rows created in the same millisecond were told apart by
-- SQLite's rowid, which PostgreSQL has no counterpart of: `seq` is that order as a column (here
-- the rowid itself, copied by a trigger; on PostgreSQL an identity). Queries order by
-- (created_at, seq).
ALTER TABLE tasks ADD COLUMN seq INTEGER;
UPDATE tasks SET seq = rowid;
CREATE TRIGGER tasks_seq AFTER INSERT ON tasks FOR EACH ROW WHEN NEW.seq IS NULL
BEGIN
  UPDATE tasks SET seq = NEW.rowid WHERE rowid = NEW.rowid;
END;

ALTER TABLE environments ADD COLUMN seq INTEGER;
UPDATE environments SET seq = rowid;
CREATE TRIGGER environments_seq AFTER INSERT ON environments FOR EACH ROW WHEN NEW.seq IS NULL
BEGIN
  UPDATE environments SET seq = NEW.rowid WHERE rowid = NEW.rowid;
END;

-- Spend is summed per repository and organisation whatever the case of their names, written
-- `lower(name) = lower(?)` on both databases (PostgreSQL has no COLLATE NOCASE): the indexes follow.
DROP INDEX task_spend_repo_month;
DROP INDEX task_spend_owner_month;
CREATE INDEX task_spend_repo_month ON task_spend (lower(repo_full_name), month);
CREATE INDEX task_spend_owner_month ON task_spend (lower(owner), month);
