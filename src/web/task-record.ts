import { type AuditEvent, type AuditLog, type StoredEventRow, storedRowToEvent } from '../audit/audit-log.ts';
import type { Db } from '../store/database.ts';

/**
 * Reads the parts of a task's audit record that pages and the API show besides the events, after
 * committing any events still waiting, so a page never shows less than the log has accepted.
 */
export class TaskRecord {
  readonly #head;
  readonly #diff;
  readonly audit: AuditLog;

  constructor(db: Db, audit: AuditLog) {
    this.audit = audit;
    this.#head = db.prepare('SELECT seq, hash FROM audit_events WHERE task_id = ? ORDER BY seq DESC LIMIT 1');
    this.#diff = db.prepare(
      `SELECT * FROM audit_events WHERE task_id = ? AND type = 'git.diff' ORDER BY seq DESC LIMIT 1`,
    );
  }

  /** The chain's latest event: its sequence number (the event count) and hash. */
  head(taskId: string): { seq: number; hash: string } | undefined {
    this.audit.flush();
    return this.#head.get(taskId) as { seq: number; hash: string } | undefined;
  }

  /** The latest recorded diff. */
  diff(taskId: string): AuditEvent | undefined {
    this.audit.flush();
    const row = this.#diff.get(taskId) as StoredEventRow | undefined;
    return row ? storedRowToEvent(row) : undefined;
  }
}
