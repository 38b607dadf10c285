import { createHash } from 'node:crypto';
import { z } from 'zod';
import type { AuditSink } from '../audit-sink.ts';
import type { Clock } from '../clock.ts';
import type { SecretRedactor } from '../secrets.ts';
import type { Db } from '../store/database.ts';

/** The hash a chain starts from. */
export const GENESIS_HASH = '0'.repeat(64);

/** The key under which a conversation event's chained data holds its text's digest. */
export const CONTENT_KEY = '$content';

/**
 * Where a prompt or model response's text stands: `kept` (in `data`), `purged` (deleted under the
 * retention policy or by an operator; the purge is an event of the same chain) or `not_kept` (the
 * policy said not to store it). The digest stays in the chain whatever happens to the text.
 */
export const AuditContent = z.object({
  sha256: z.string(),
  bytes: z.number().int().nonnegative(),
  state: z.enum(['kept', 'purged', 'not_kept']),
});
export type AuditContent = z.infer<typeof AuditContent>;

/** One stored audit event. */
export const AuditEvent = z.object({
  taskId: z.string(),
  seq: z.number().int().positive(),
  ts: z.string(),
  type: z.string(),
  data: z.record(z.string(), z.unknown()),
  prevHash: z.string(),
  hash: z.string(),
  /** Present on conversation events (prompts, model responses): see {@link AuditContent}. */
  content: AuditContent.optional(),
});
export type AuditEvent = z.infer<typeof AuditEvent>;

/** Options for {@link AuditLog}. */
export interface AuditLogOptions {
  /** Whether to store the text of prompts and model responses (false: only their digest). */
  keepConversation?: boolean;
}

const AGENT_METADATA_TYPES = new Set(['agent.info', 'agent.exit']);

/**
 * Whether an event type carries prompt or model-response text, which the retention policy governs:
 * the prompt as sent, and everything the agent said or did (messages, tool calls), but not the
 * agent's name, version or exit status.
 */
export function isConversationType(type: string): boolean {
  return type === 'task.prompt' || (type.startsWith('agent.') && !AGENT_METADATA_TYPES.has(type));
}

/** Agent events that are bookkeeping rather than what the model said or did: kept in the chain. */
const AGENT_METADATA_KINDS = new Set(['session', 'usage']);

/** Whether this event's text is governed by the retention policy (its type, and for agent events its kind). */
export function isConversationEvent(type: string, data: Record<string, unknown>): boolean {
  if (type === 'agent.event' && AGENT_METADATA_KINDS.has(String(data.kind))) return false;
  return isConversationType(type);
}

/**
 * The append-only, hash-chained audit log. Every string is scrubbed of registered secrets and
 * credential-shaped text before it is hashed and stored; SQLite triggers refuse UPDATE and DELETE.
 */
export class AuditLog implements AuditSink {
  readonly #db: Db;
  readonly #clock: Clock;
  readonly #redactor: SecretRedactor;
  readonly #keepConversation: boolean;
  readonly #heads = new Map<string, { seq: number; hash: string }>();
  readonly #insert;
  readonly #insertWithPayload: (row: EventRowValues, payloadJson: string) => void;
  readonly #selectHead;
  readonly #selectEvents;
  readonly #listeners = new Set<(event: AuditEvent) => void>();

  constructor(db: Db, clock: Clock, redactor: SecretRedactor, options: AuditLogOptions = {}) {
    this.#db = db;
    this.#clock = clock;
    this.#redactor = redactor;
    this.#keepConversation = options.keepConversation ?? true;
    this.#insert = db.prepare(
      'INSERT INTO audit_events (task_id, seq, ts, type, data_json, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)',
    );
    const insertPayload = db.prepare('INSERT INTO audit_payloads (task_id, seq, data_json) VALUES (?, ?, ?)');
    const insert = this.#insert;
    this.#insertWithPayload = db.transaction((row: EventRowValues, payloadJson: string) => {
      insert.run(...row);
      insertPayload.run(row[0], row[1], payloadJson);
    });
    this.#selectHead = db.prepare(
      'SELECT seq, hash FROM audit_events WHERE task_id = ? ORDER BY seq DESC LIMIT 1',
    );
    this.#selectEvents = db.prepare(
      `SELECT e.task_id, e.seq, e.ts, e.type, e.data_json, e.prev_hash, e.hash, p.data_json AS payload_json
       FROM audit_events e LEFT JOIN audit_payloads p ON p.task_id = e.task_id AND p.seq = e.seq
       WHERE e.task_id = ? AND e.seq > ? ORDER BY e.seq LIMIT ?`,
    );
  }

  /** Appends one event to a task's chain. */
  append(taskId: string, type: string, data: Record<string, unknown>): void {
    const ts = this.#clock.now().toISOString();
    // Scrub the canonical text once; re-canonicalize only in the rare case a key itself was scrubbed.
    const raw = canonicalJson(data);
    const scrubbed = this.#redactor.scrub(raw);
    const dataJson = scrubbed === raw ? raw : canonicalJson(JSON.parse(scrubbed));
    const clean = JSON.parse(dataJson) as Record<string, unknown>;
    const conversation = isConversationEvent(type, clean);
    const content = conversation
      ? {
          sha256: createHash('sha256').update(dataJson).digest('hex'),
          bytes: Buffer.byteLength(dataJson),
          kept: this.#keepConversation,
        }
      : undefined;
    const storedJson = content ? canonicalJson({ [CONTENT_KEY]: content }) : dataJson;
    const write = () => {
      const head = this.#head(taskId);
      const seq = head.seq + 1;
      const hash = eventHash({ taskId, seq, ts, type, dataJson: storedJson, prevHash: head.hash });
      if (content?.kept) {
        this.#insertWithPayload([taskId, seq, ts, type, storedJson, head.hash, hash], dataJson);
      } else {
        this.#insert.run(taskId, seq, ts, type, storedJson, head.hash, hash);
      }
      this.#heads.set(taskId, { seq, hash });
      return { seq, prevHash: head.hash, hash };
    };
    let written: { seq: number; prevHash: string; hash: string };
    try {
      written = write();
    } catch (error) {
      // Another process (the CLI's purge, a second control plane) appended to this chain since
      // its head was cached: re-read the head once and link to it.
      if ((error as { code?: string }).code !== 'SQLITE_CONSTRAINT_PRIMARYKEY') throw error;
      this.#heads.delete(taskId);
      written = write();
    }
    const event: AuditEvent = {
      taskId,
      ts,
      type,
      data: content && !content.kept ? {} : clean,
      ...written,
      ...(content
        ? {
            content: {
              sha256: content.sha256,
              bytes: content.bytes,
              state: content.kept ? 'kept' : 'not_kept',
            },
          }
        : {}),
    };
    for (const listener of this.#listeners) listener(event);
  }

  /** Appends several events in one transaction (fast path for bursts such as exec audit). */
  appendMany(events: ReadonlyArray<{ taskId: string; type: string; data: Record<string, unknown> }>): void {
    this.#db.transaction(() => {
      for (const e of events) this.append(e.taskId, e.type, e.data);
    })();
  }

  /** A task's events in order, with the kept text of conversation events. */
  events(taskId: string, options: { afterSeq?: number; limit?: number } = {}): AuditEvent[] {
    return this.#selectEvents
      .all(taskId, options.afterSeq ?? 0, options.limit ?? 1_000_000)
      .map((row) => storedRowToEvent(row as StoredEventRow));
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
      const row = this.#selectHead.get(taskId) as { seq: number; hash: string } | undefined;
      head = row ?? { seq: 0, hash: GENESIS_HASH };
      this.#heads.set(taskId, head);
    }
    return head;
  }
}

/** The values of one audit_events row, in column order. */
type EventRowValues = [string, number, string, string, string, string, string];

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
  return JSON.stringify(sortedKeys(value)) ?? 'null';
}

function sortedKeys(value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value;
  const v =
    typeof (value as { toJSON?: unknown }).toJSON === 'function'
      ? (value as { toJSON(): unknown }).toJSON()
      : value;
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map(sortedKeys);
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(v).sort()) out[key] = sortedKeys((v as Record<string, unknown>)[key]);
  return out;
}

/** An audit_events row, with its payload's text when the query joined audit_payloads. */
export interface StoredEventRow {
  task_id: string;
  seq: number;
  ts: string;
  type: string;
  data_json: string;
  prev_hash: string;
  hash: string;
  payload_json?: string | null;
}

/** Turns a stored row (and its joined payload, if any) into an event as readers see it. */
export function storedRowToEvent(row: StoredEventRow): AuditEvent {
  const stored = JSON.parse(row.data_json) as Record<string, unknown>;
  const digest = stored[CONTENT_KEY] as { sha256: string; bytes: number; kept: boolean } | undefined;
  const base = {
    taskId: row.task_id,
    seq: row.seq,
    ts: row.ts,
    type: row.type,
    prevHash: row.prev_hash,
    hash: row.hash,
  };
  if (!digest || !isConversationType(row.type)) return AuditEvent.parse({ ...base, data: stored });
  const kept = typeof row.payload_json === 'string';
  return AuditEvent.parse({
    ...base,
    data: kept ? JSON.parse(row.payload_json as string) : {},
    content: {
      sha256: digest.sha256,
      bytes: digest.bytes,
      state: kept ? 'kept' : digest.kept ? 'purged' : 'not_kept',
    },
  });
}
