import { createHash } from 'node:crypto';
import type { AuditSink } from '../audit-sink.ts';
import type { Clock } from '../clock.ts';
import type { SecretRedactor } from '../secrets.ts';
import type { Db } from '../store/database.ts';
import {
  type AuditEvent,
  CONTENT_KEY,
  canonicalJson,
  type EventRowValues,
  eventHash,
  GENESIS_HASH,
  isConversationEvent,
} from './audit-event.ts';
import { AuditQueries, type EventFilter, type EventPage } from './audit-queries.ts';
import { type VerifyReport, verifyAuditChains } from './verify-chain.ts';

export * from './audit-event.ts';
export type { EventFilter, EventPage } from './audit-queries.ts';
export { isRefusalEvent } from './audit-queries.ts';

/** Options for {@link AuditLog}. */
export interface AuditLogOptions {
  /** Whether to store the text of prompts and model responses (false: only their digest). */
  keepConversation?: boolean;
  /**
   * Group commit: events appended outside a transaction are committed together at the end of the
   * current turn of the event loop (or once `maxEvents` are waiting), instead of one commit each.
   * Off: every append is committed before it returns.
   */
  groupCommit?: { maxEvents: number };
  /** Told when a grouped commit fails (the next append also throws it). */
  onError?: (error: unknown) => void;
}

/** An event scrubbed and serialized, not yet linked into its chain. */
interface PreparedEvent {
  taskId: string;
  ts: string;
  type: string;
  storedJson: string;
  /** The kept text of a conversation event, stored beside the chain. */
  payloadJson: string | undefined;
  clean: Record<string, unknown>;
  content: { sha256: string; bytes: number; kept: boolean } | undefined;
}

/** An event linked into its chain: its place and hashes. */
interface LinkedEvent extends PreparedEvent {
  seq: number;
  prevHash: string;
  hash: string;
}

/**
 * The append-only, hash-chained audit log. Every string is scrubbed of registered secrets and
 * credential-shaped text before it is hashed and stored; SQLite triggers refuse UPDATE and DELETE.
 * An event's place in its chain is fixed when it is appended; listeners hear of it once it is stored.
 */
export class AuditLog implements AuditSink {
  readonly #db: Db;
  readonly #clock: Clock;
  readonly #redactor: SecretRedactor;
  readonly #options: AuditLogOptions;
  /**
   * Each task's chain head (seq, hash) as linked so far, events waiting for a group commit
   * included. An event written in a transaction someone else controls is not committed until that
   * transaction is, and may never be: its task's entry is dropped so the next append reads the
   * head again.
   */
  readonly #heads = new Map<string, { seq: number; hash: string }>();
  /** Set while appendMany's own top-level transaction runs: its outcome is known here. */
  #ownTransaction = false;
  readonly #insert;
  readonly #insertPayload;
  readonly #writeBatch: (events: readonly LinkedEvent[]) => void;
  readonly #selectHead;
  readonly #queries: AuditQueries;
  readonly #listeners = new Set<(event: AuditEvent) => void>();
  #pending: LinkedEvent[] = [];
  #flushScheduled = false;
  #failure: unknown;

  constructor(db: Db, clock: Clock, redactor: SecretRedactor, options: AuditLogOptions = {}) {
    this.#db = db;
    this.#clock = clock;
    this.#redactor = redactor;
    this.#options = options;
    this.#insert = db.prepare(
      'INSERT INTO audit_events (task_id, seq, ts, type, data_json, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?)',
    );
    this.#insertPayload = db.prepare('INSERT INTO audit_payloads (task_id, seq, data_json) VALUES (?, ?, ?)');
    this.#writeBatch = db.transaction((events: readonly LinkedEvent[]) => {
      // One transaction: each event and its text are stored together or not at all.
      for (const e of events) this.#insertRow(e, false);
    });
    this.#selectHead = db.prepare(
      'SELECT seq, hash FROM audit_events WHERE task_id = ? ORDER BY seq DESC LIMIT 1',
    );
    this.#queries = new AuditQueries(db);
  }

  /**
   * Appends one event to a task's chain. Inside a caller's transaction the event is written in it;
   * otherwise it is committed before this returns, or with group commit by the end of this turn.
   */
  append(taskId: string, type: string, data: Record<string, unknown>): void {
    if (this.#failure !== undefined) {
      const cause = this.#failure;
      this.#failure = undefined;
      throw new Error('an earlier audit write failed; its events were not stored', { cause });
    }
    const prepared = this.#prepare(taskId, type, data);
    const group = this.#options.groupCommit;
    if (group && !this.#db.inTransaction) {
      this.#pending.push(this.#link(prepared));
      if (this.#pending.length >= group.maxEvents) this.flush();
      else if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        setImmediate(() => this.#scheduledFlush());
      }
      return;
    }
    // Events waiting for a group commit are not flushed here: inside a caller's transaction they
    // would roll back with it. They keep their sequence numbers and follow by the end of the turn.
    if (!this.#db.inTransaction) this.flush();
    this.#commit([this.#link(prepared)], (events) => {
      for (const e of events) this.#insertRow(e, true);
    });
    // Written in the caller's transaction, which may yet roll back.
    if (this.#db.inTransaction && !this.#ownTransaction) this.#heads.delete(taskId);
  }

  /** Appends several events in one transaction (fast path for bursts such as exec audit). */
  appendMany(events: ReadonlyArray<{ taskId: string; type: string; data: Record<string, unknown> }>): void {
    const own = !this.#db.inTransaction;
    if (own) {
      this.flush();
      this.#ownTransaction = true;
    }
    try {
      this.#db.transaction(() => {
        for (const e of events) this.append(e.taskId, e.type, e.data);
      })();
    } catch (error) {
      // Rolled back: none of these events was stored, so the cached heads are ahead of the table.
      for (const e of events) this.#heads.delete(e.taskId);
      throw error;
    } finally {
      if (own) this.#ownTransaction = false;
    }
  }

  /**
   * Commits every event still waiting for a group commit. Inside a transaction it does nothing:
   * they are committed on their own once it is over.
   */
  flush(): void {
    if (this.#pending.length === 0 || this.#db.inTransaction) return;
    const batch = this.#pending;
    this.#pending = [];
    this.#commit(batch, this.#writeBatch);
  }

  // Reads. Each commits the events waiting for a group commit first, so a reader never sees less
  // than the log has accepted; group commit stays this class's own business.

  /**
   * A task's events in chain order, with the kept text of conversation events: every event, or a
   * page after `afterSeq` / before `beforeSeq`, optionally filtered.
   */
  events(taskId: string, page: EventPage = {}, filter: EventFilter = {}): AuditEvent[] {
    this.flush();
    return this.#queries.events(taskId, page, filter);
  }

  /** The latest of a task's events that matches a filter (its latest diff, its outcome...). */
  latest(taskId: string, filter: EventFilter): AuditEvent | undefined {
    this.flush();
    return this.#queries.latest(taskId, filter);
  }

  /** The sequence numbers of a task's events that match a filter, first `limit` of them. */
  seqs(taskId: string, filter: EventFilter, limit = 1000): number[] {
    this.flush();
    return this.#queries.seqs(taskId, filter, limit);
  }

  /** How many events of each type a task's chain holds. */
  typeCounts(taskId: string): Map<string, number> {
    this.flush();
    return this.#queries.typeCounts(taskId);
  }

  /** The chain's latest stored event: its sequence number (the event count) and hash. */
  head(taskId: string): { seq: number; hash: string } | undefined {
    this.flush();
    return this.#queries.head(taskId);
  }

  /** The hash of a task's latest event (shown on the PR's check run). */
  headHash(taskId: string): string | undefined {
    const head = this.#head(taskId);
    return head.seq === 0 ? undefined : head.hash;
  }

  /** Recomputes a task's chain (or every chain) from what is stored; see {@link verifyAuditChains}. */
  verify(taskId?: string): VerifyReport {
    this.flush();
    return verifyAuditChains(this.#db, taskId);
  }

  /** The kept prompt and model-response texts of a task (what a purge would delete). */
  keptTexts(taskId: string): Array<{ seq: number; bytes: number }> {
    this.flush();
    return this.#queries.keptTexts(taskId);
  }

  /**
   * Purges a task's kept texts in one transaction: an `audit.purged` event listing them (with the
   * caller's record of who and why) is appended to the task's chain, then the texts are deleted.
   * The chained digests remain, so the chain still verifies. Returns what went.
   */
  purgeTexts(taskId: string, record: Record<string, unknown>): { payloads: number; bytes: number } {
    this.flush();
    // Deleted text is overwritten in the database file, not just unlinked from it.
    this.#db.pragma('secure_delete = ON');
    return this.#db.transaction(() => {
      const texts = this.#queries.keptTexts(taskId);
      if (texts.length === 0) return { payloads: 0, bytes: 0 };
      const bytes = texts.reduce((sum, t) => sum + t.bytes, 0);
      this.append(taskId, 'audit.purged', {
        purged: texts.map((t) => t.seq),
        bytes,
        what: 'prompt and model-response text',
        ...record,
      });
      for (const t of texts) this.#queries.deleteText(taskId, t.seq);
      return { payloads: texts.length, bytes };
    })();
  }

  /** Subscribes to new events (live updates); returns the unsubscribe function. */
  subscribe(listener: (event: AuditEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #prepare(taskId: string, type: string, data: Record<string, unknown>): PreparedEvent {
    const ts = this.#clock.now().toISOString();
    // Scrub the canonical text once; re-canonicalize only in the rare case a key itself was scrubbed.
    const raw = canonicalJson(data);
    const scrubbed = this.#redactor.scrub(raw);
    const dataJson = scrubbed === raw ? raw : canonicalJson(JSON.parse(scrubbed));
    const clean = JSON.parse(dataJson) as Record<string, unknown>;
    const content = isConversationEvent(type, clean)
      ? {
          sha256: createHash('sha256').update(dataJson).digest('hex'),
          bytes: Buffer.byteLength(dataJson),
          kept: this.#options.keepConversation ?? true,
        }
      : undefined;
    return {
      taskId,
      ts,
      type,
      storedJson: content ? canonicalJson({ [CONTENT_KEY]: content }) : dataJson,
      payloadJson: content?.kept ? dataJson : undefined,
      clean,
      content,
    };
  }

  #link(e: PreparedEvent): LinkedEvent {
    const head = this.#head(e.taskId);
    const seq = head.seq + 1;
    const hash = eventHash({
      taskId: e.taskId,
      seq,
      ts: e.ts,
      type: e.type,
      dataJson: e.storedJson,
      prevHash: head.hash,
    });
    this.#heads.set(e.taskId, { seq, hash });
    return { ...e, seq, prevHash: head.hash, hash };
  }

  #insertRow(e: LinkedEvent, savepoint: boolean): void {
    const row: EventRowValues = [e.taskId, e.seq, e.ts, e.type, e.storedJson, e.prevHash, e.hash];
    if (e.payloadJson === undefined) {
      this.#insert.run(...row);
      return;
    }
    const both = () => {
      this.#insert.run(...row);
      this.#insertPayload.run(e.taskId, e.seq, e.payloadJson);
    };
    // Outside a batch, a savepoint stores the event and its text together or not at all.
    if (savepoint) this.#db.transaction(both)();
    else both();
  }

  /** Writes linked events, then tells listeners. */
  #commit(events: LinkedEvent[], write: (events: readonly LinkedEvent[]) => void): void {
    let stored = events;
    try {
      write(stored);
    } catch (error) {
      for (const e of events) this.#heads.delete(e.taskId);
      // Another process (the CLI's purge, a second control plane) appended to one of these chains
      // since its head was cached: re-read the heads and link again, once.
      if ((error as { code?: string }).code !== 'SQLITE_CONSTRAINT_PRIMARYKEY') throw error;
      stored = events.map((e) => this.#link(e));
      write(stored);
    }
    for (const e of stored) this.#notify(e);
  }

  #scheduledFlush(): void {
    this.#flushScheduled = false;
    try {
      this.flush();
    } catch (error) {
      this.#failure = error;
      this.#options.onError?.(error);
    }
    // A transaction left open across turns held the flush back: try again next turn.
    if (this.#pending.length > 0 && !this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(() => this.#scheduledFlush());
    }
  }

  #notify(e: LinkedEvent): void {
    if (this.#listeners.size === 0) return;
    const event: AuditEvent = {
      taskId: e.taskId,
      seq: e.seq,
      ts: e.ts,
      type: e.type,
      data: e.content && !e.content.kept ? {} : e.clean,
      prevHash: e.prevHash,
      hash: e.hash,
      ...(e.content
        ? {
            content: {
              sha256: e.content.sha256,
              bytes: e.content.bytes,
              state: e.content.kept ? 'kept' : 'not_kept',
            },
          }
        : {}),
    };
    for (const listener of this.#listeners) listener(event);
  }

  #head(taskId: string): { seq: number; hash: string } {
    let head = this.#heads.get(taskId);
    if (!head) {
      const row = this.#selectHead.get(taskId) as { seq: number; hash: string } | undefined;
      head = row ?? { seq: 0, hash: GENESIS_HASH };
      // An event still waiting for its group commit may be later than the table's last.
      const waiting = this.#pending.findLast((e) => e.taskId === taskId);
      if (waiting && waiting.seq > head.seq) head = { seq: waiting.seq, hash: waiting.hash };
      this.#heads.set(taskId, head);
    }
    return head;
  }
}
