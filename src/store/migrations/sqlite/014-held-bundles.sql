-- A held result's git bundle in the database, beside its record (see the PostgreSQL migration);
-- on one host the held repository serves the push, and the bundle is what another process would use.
ALTER TABLE held_results ADD COLUMN bundle BLOB;
