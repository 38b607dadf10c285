-- The refs of an environment's workspace right after its clone (JSON: {"head": ..., "refs": {...}}):
-- a restored task's workspace is brought up to date from them with a pack the host computes from
-- its mirror of the repository. NULL for environments built before they were recorded: their tasks
-- fetch in the guest.
ALTER TABLE environments ADD COLUMN workspace_refs TEXT;
