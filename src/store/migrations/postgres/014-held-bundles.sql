-- A held result's git bundle in the database, beside its record: the approved push may be run by
-- another worker than the one that held it (its held repository is on that worker's disk only).
-- Cleared when the result is discarded.
ALTER TABLE held_results ADD COLUMN bundle BYTEA;
