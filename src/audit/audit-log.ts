import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { AuditSink } from '../audit-sink.ts';
import type { Clock } from '../clock.ts';
import type { SecretRedactor } from '../secrets.ts';
import type { Db } from '../store/database.ts';

/** The hash a chain starts from. */
export const GENESIS_HASH = '0'.repeat(64);

/** One stored audit event. */
export const AuditEvent = z.object({
  taskId: z.string(),
  seq: z.number().int().positive(),
  ts: z.string(),
  type: z.string(),
  data: z.record(z.string(), z.unknown()),
  prevHash: z.string(),
  hash: z.string(),
});
export type AuditEvent = z.infer<typeof AuditEvent>;

/**
 * The append-only, hash-chained audit log. Every string is scrubbed of registered secrets and
 * credential-shaped text before it is hashed and stored; SQLite triggers refuse UPDATE and DELETE.
 */
export class AuditLog implements AuditSink {
  readonly #db: Db;
  readonly #clock: Clock;
  readonly #redactor: SecretRedactor;
  readonly #heads = new Map<string, { seq: number; hash: string }>();
  readonly #insert;
  readonly #listeners = new Set<(event: AuditEvent) => void>();

  constructor(db: Db, clock: Clock, redactor: SecretRedactor) {
    this.#db = db;
    this.#clock = clock;
    this.#redactor = redactor;
    this.#insert = db.prepare(
      'INSERT INTO audit_events (task_id, seq, ts, type, data_json, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)',
    );
  }

  /** Appends one event to a task's chain. */
  append(taskId: string, type: string, data: Record<string, unknown>): void {
    const head = this.#head(taskId);
    const ts = this.#clock.now().toISOString();
    const clean = this.#redactor.scrubValue(data);
    const dataJson = canonicalJson(clean);
    const seq = head.seq + 1;
    const hash = eventHash({ taskId, seq, ts, type, dataJson, prevHash: head.hash });
    this.#insert.run(taskId, seq, ts, type, dataJson, head.hash, hash);
    this.#heads.set(taskId, { seq, hash });
    const event = { taskId, seq, ts, type, data: clean, prevHash: head.hash, hash };
    for (const listener of this.#listeners) listener(event);
  }

  /** Appends several events in one transaction (fast path for bursts such as exec audit). */
  appendMany(events: ReadonlyArray<{ taskId: string; type: string; data: Record<string, unknown> }>): void {
    this.#db.transaction(() => {
      for (const e of events) this.append(e.taskId, e.type, e.data);
    })();
  }

  /** A task's events in order. */
  events(taskId: string, options: { afterSeq?: number; limit?: number } = {}): AuditEvent[] {
    return this.#db
      .prepare('SELECT * FROM audit_events WHERE task_id = ? AND seq > ? ORDER BY seq LIMIT ?')
      .all(taskId, options.afterSeq ?? 0, options.limit ?? 1_000_000)
      .map(rowToEvent);
  }

  /** The hash of a task's latest event (shown on the PR's check run). */
  headHash(taskId: string): string | undefined {
    const head = this.#head(taskId);
    return head.seq === 0 ? undefined : head.hash;
  }

  /** Subscribes to new events (live updates); returns the unsubscribe function. */
  subscribe(listener: (event: AuditEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #head(taskId: string): { seq: number; hash: string } {
    let head = this.#heads.get(taskId);
    if (!head) {
      const row = this.#db
        .prepare('SELECT seq, hash FROM audit_events WHERE task_id = ? ORDER BY seq DESC LIMIT 1')
        .get(taskId) as { seq: number; hash: string } | undefined;
      head = row ?? { seq: 0, hash: GENESIS_HASH };
      this.#heads.set(taskId, head);
    }
    return head;
  }
}

/** The hash of one event: sha256 over the previous hash and the event's canonical fields. */
export function eventHash(e: {
  taskId: string;
  seq: number;
  ts: string;
  type: string;
  dataJson: string;
  prevHash: string;
}): string {
  return createHash('sha256')
    .update(`${e.prevHash}\n${e.taskId}\n${e.seq}\n${e.ts}\n${e.type}\n${e.dataJson}`)
    .digest('hex');
}

/** JSON with object keys sorted, so the same data always hashes the same. */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(
          Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
        )
      : v,
  );
}

function rowToEvent(row: unknown): AuditEvent {
  const r = row as Record<string, string | number>;
  return AuditEvent.parse({
    taskId: r.task_id,
    seq: r.seq,
    ts: r.ts,
    type: r.type,
    data: JSON.parse(String(r.data_json)),
    prevHash: r.prev_hash,
    hash: r.hash,
  });
}
