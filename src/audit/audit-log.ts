import { createHash, randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import type { AuditSink } from '../audit-sink.ts';
import type { Clock } from '../clock.ts';
import type { SecretRedactor } from '../secrets.ts';
import type { Kdb, Store } from '../store/database.ts';
import { type AuditEvent, CONTENT_KEY, canonicalJson, isConversationEvent } from './audit-event.ts';
import { AuditQueries, type EventFilter, type EventPage } from './audit-queries.ts';
import {
  type ChainEvent,
  type ChainLink,
  type ChainReads,
  type ChainWrite,
  writeChains,
} from './chain-writer.ts';
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
   * current turn of the event loop (or once `maxEvents` are waiting), in one transaction. Off: a
   * commit starts at once (what is appended while one is being written goes in the next).
   */
  groupCommit?: { maxEvents: number };
  /**
   * Told when appended events could not be committed (the next append also throws it), or when a
   * listener failed (the event is stored).
   */
  onError?: (error: unknown, what: 'commit' | 'listener') => void;
}

/** An event scrubbed and serialized, not yet linked into its chain. */
interface PreparedEvent extends ChainEvent {
  /** Its place in this process's order of appends. */
  n: number;
  clean: Record<string, unknown>;
  content: { sha256: string; bytes: number; kept: boolean } | undefined;
}

/** An event appended outside a transaction, until it is known to be committed. */
interface QueuedEvent extends PreparedEvent {
  /** `writing`: in the group commit's transaction; `done`: committed, or given up with it. */
  state: 'queued' | 'writing' | 'done';
  /**
   * Where the last transaction of this process to write it put it: a caller's (`by`), ahead of its
   * own events of the same task (see #writeInTransaction), or the group commit's. Set before that
   * transaction commits, while it holds the chain's lock; whether it committed is read back from
   * the chain by the next writer to hold the lock.
   */
  writtenAt?: { link: ChainLink; by?: TransactionEvents };
}

/** The events appended in one open transaction, written just before it commits. */
interface TransactionEvents {
  events: PreparedEvent[];
  /** Whether a before-commit write of `events` is registered. */
  hooked: boolean;
  /** The chains this transaction has written already (it holds their locks; only it sees their heads). */
  wrote: Set<string>;
}

const isQueued = (e: PreparedEvent): e is QueuedEvent => 'state' in e;

/**
 * The append-only, hash-chained audit log, one chain per task, on either database. Every string
 * is scrubbed of registered secrets and credential-shaped text before it is hashed and stored;
 * the database refuses UPDATE and DELETE.
 *
 * `append` returns at once. Inside a transaction (`store.transaction`), the event is written in
 * it, just before it commits, so it commits or rolls back with the caller's writes. Otherwise it
 * is queued for the group commit. Either way an event is linked into its chain (its sequence
 * number and hashes) in the transaction that writes it, under its task's lock: writers in several
 * processes share one chain. Listeners hear of an event once it is committed.
 */
/** Where processes sharing a PostgreSQL database tell each other of committed audit events. */
export const AUDIT_CHANNEL = 'airlock_audit';

export class AuditLog implements AuditSink {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #redactor: SecretRedactor;
  readonly #options: AuditLogOptions;
  readonly #queries: AuditQueries;
  readonly #listeners = new Set<(event: AuditEvent) => void>();
  /** Listeners that also hear of events other processes commit (see shareAcrossProcesses). */
  readonly #everywhere = new Set<(event: AuditEvent) => void>();
  /** This log's tag in cross-process notifications, so it ignores its own. */
  readonly #tag = randomUUID();
  #sharing = false;
  /** Events appended outside a transaction, in append order, until they are committed. */
  #queue: QueuedEvent[] = [];
  readonly #transactions = new WeakMap<Kdb, TransactionEvents>();
  /**
   * SQLite: each chain's head as of this log's last commit to it, so a commit need not read it
   * (written from committed transactions only; a head that another writer has moved on is found
   * out by the insert, and read; see writeChains).
   */
  readonly #heads = new Map<string, { seq: number; hash: string }>();
  /** The group commit being written, if one is. */
  #groupWrite: Promise<void> | undefined;
  #groupScheduled = false;
  #appended = 0;
  #failure: unknown;

  constructor(store: Store, clock: Clock, redactor: SecretRedactor, options: AuditLogOptions = {}) {
    this.#store = store;
    this.#clock = clock;
    this.#redactor = redactor;
    this.#options = options;
    this.#queries = new AuditQueries(store);
  }

  /**
   * Appends one event to a task's chain: inside a caller's transaction, written in it before it
   * commits; otherwise committed with the next group commit.
   */
  append(taskId: string, type: string, data: Record<string, unknown>): void {
    this.#throwEarlierFailure();
    this.#enqueue([this.#prepare(taskId, type, data)]);
  }

  /** Appends several events, all or none (one that cannot be serialized stores none of them). */
  appendMany(events: ReadonlyArray<{ taskId: string; type: string; data: Record<string, unknown> }>): void {
    this.#throwEarlierFailure();
    this.#enqueue(events.map((e) => this.#prepare(e.taskId, e.type, e.data)));
  }

  /**
   * Commits every event appended outside a transaction before this call. Inside a transaction it
   * does nothing: they are committed on their own once it is over. A failed commit is not thrown
   * here: it goes to `onError`, and the next append throws it.
   */
  async flush(): Promise<void> {
    if (this.#store.inTransaction()) return;
    const upTo = this.#appended;
    while (this.#queue.some((e) => e.n <= upTo && e.state !== 'done')) await this.#commitQueued();
  }

  // Reads. Each commits the events waiting for a group commit first, so a reader never sees less
  // than the log has accepted; group commit stays this class's own business.

  /**
   * A task's events in chain order, with the kept text of conversation events: every event, or a
   * page after `afterSeq` / before `beforeSeq`, optionally filtered.
   */
  async events(taskId: string, page: EventPage = {}, filter: EventFilter = {}): Promise<AuditEvent[]> {
    await this.flush();
    return this.#queries.events(taskId, page, filter);
  }

  /** The latest of a task's events that matches a filter (its latest diff, its outcome...). */
  async latest(taskId: string, filter: EventFilter): Promise<AuditEvent | undefined> {
    await this.flush();
    return this.#queries.latest(taskId, filter);
  }

  /** The sequence numbers of a task's events that match a filter, first `limit` of them. */
  async seqs(taskId: string, filter: EventFilter, limit = 1000): Promise<number[]> {
    await this.flush();
    return this.#queries.seqs(taskId, filter, limit);
  }

  /** How many events of each type a task's chain holds. */
  async typeCounts(taskId: string): Promise<Map<string, number>> {
    await this.flush();
    return this.#queries.typeCounts(taskId);
  }

  /** The chain's latest stored event: its sequence number (the event count) and hash. */
  async head(taskId: string): Promise<{ seq: number; hash: string } | undefined> {
    await this.flush();
    return this.#queries.head(taskId);
  }

  /** The hash of a task's latest event (shown on the PR's check run). */
  async headHash(taskId: string): Promise<string | undefined> {
    return (await this.head(taskId))?.hash;
  }

  /** Recomputes a task's chain (or every chain) from what is stored; see {@link verifyAuditChains}. */
  async verify(taskId?: string): Promise<VerifyReport> {
    await this.flush();
    return verifyAuditChains(this.#store, taskId);
  }

  /** The kept prompt and model-response texts of a task (what a purge would delete). */
  async keptTexts(taskId: string): Promise<Array<{ seq: number; bytes: number }>> {
    await this.flush();
    return this.#queries.keptTexts(taskId);
  }

  /**
   * Purges a task's kept texts in one transaction: an `audit.purged` event listing them (with the
   * caller's record of who and why) is appended to the task's chain, then the texts are deleted.
   * The chained digests remain, so the chain still verifies. Returns what went.
   */
  async purgeTexts(
    taskId: string,
    record: Record<string, unknown>,
  ): Promise<{ payloads: number; bytes: number }> {
    await this.flush();
    // SQLite: deleted text is overwritten in the database file, not just unlinked from it.
    if (this.#store.dialect === 'sqlite') await sql`PRAGMA secure_delete = ON`.execute(this.#store.db);
    return this.#store.transaction(async () => {
      const texts = await this.#queries.keptTexts(taskId);
      if (texts.length === 0) return { payloads: 0, bytes: 0 };
      const bytes = texts.reduce((sum, t) => sum + t.bytes, 0);
      this.append(taskId, 'audit.purged', {
        purged: texts.map((t) => t.seq),
        bytes,
        what: 'prompt and model-response text',
        ...record,
      });
      // The database refuses each deletion until the chain holds the purge, which is written just
      // before commit: the deletions are registered after it, so they run after it.
      this.#store.beforeCommit(() =>
        this.#queries.deleteTexts(
          taskId,
          texts.map((t) => t.seq),
        ),
      );
      return { payloads: texts.length, bytes };
    });
  }

  /** Subscribes to new events (live updates), heard once committed; returns the unsubscribe function. */
  subscribe(listener: (event: AuditEvent) => void, options: { everywhere?: boolean } = {}): () => void {
    this.#listeners.add(listener);
    if (options.everywhere) this.#everywhere.add(listener);
    return () => {
      this.#listeners.delete(listener);
      this.#everywhere.delete(listener);
    };
  }

  /**
   * With several processes on one PostgreSQL database (a worker writes a task's VM and proxy events,
   * a control plane serves its page), tells the others of every commit (one notification: each
   * task and the range of places it wrote) and, for listeners subscribed `everywhere` (a task's
   * live page), reads and delivers the events the others commit. Returns the way to stop.
   */
  async shareAcrossProcesses(): Promise<() => Promise<void>> {
    if (this.#store.dialect !== 'postgres') return async () => {};
    this.#sharing = true;
    let reading = Promise.resolve();
    const unlisten = await this.#store.listen(AUDIT_CHANNEL, (payload) => {
      const [tag, ...ranges] = payload.split(' ');
      if (tag === this.#tag || this.#everywhere.size === 0) return;
      // In order of arrival, so each task's events reach a page in chain order.
      reading = reading.then(() => this.#deliverRemote(ranges));
    });
    return async () => {
      this.#sharing = false;
      await unlisten();
      await reading;
    };
  }

  async #deliverRemote(ranges: string[]): Promise<void> {
    for (const range of ranges) {
      const match = /^(.+):(\d+):(\d+)$/.exec(range);
      if (!match) continue;
      const [, taskId, from, to] = match as unknown as [string, string, string, string];
      try {
        const events = await this.#queries.events(
          taskId,
          { afterSeq: Number(from) - 1, beforeSeq: Number(to) + 1, limit: Number(to) - Number(from) + 1 },
          {},
        );
        for (const event of events)
          for (const listener of this.#everywhere) {
            try {
              listener(event);
            } catch (error) {
              this.#options.onError?.(error, 'listener');
            }
          }
      } catch (error) {
        this.#options.onError?.(error, 'listener');
      }
    }
  }

  /** Tells the other processes on the database which places of which chains a commit wrote. */
  #announce(stored: Array<{ event: PreparedEvent; link: ChainLink }>): void {
    if (!this.#sharing || stored.length === 0) return;
    const spans = new Map<string, { from: number; to: number }>();
    for (const { event, link } of stored) {
      const span = spans.get(event.taskId);
      if (!span) spans.set(event.taskId, { from: link.seq, to: link.seq });
      else {
        span.from = Math.min(span.from, link.seq);
        span.to = Math.max(span.to, link.seq);
      }
    }
    // NOTIFY carries at most 8000 bytes: long lists go in several.
    let payload = this.#tag;
    const send = (text: string) =>
      void this.#store
        .notify(AUDIT_CHANNEL, text)
        .catch((error) => this.#options.onError?.(error, 'listener'));
    for (const [taskId, { from, to }] of spans) {
      const range = ` ${taskId}:${from}:${to}`;
      if (payload.length + range.length > 7000) {
        send(payload);
        payload = this.#tag;
      }
      payload += range;
    }
    send(payload);
  }

  #throwEarlierFailure(): void {
    if (this.#failure === undefined) return;
    const cause = this.#failure;
    this.#failure = undefined;
    throw new Error('an earlier audit write failed; its events were not stored', { cause });
  }

  #enqueue(events: PreparedEvent[]): void {
    if (this.#store.inTransaction()) {
      // The transaction's handle is the same object for its whole life: one entry per transaction.
      const trx = this.#store.db;
      let entry = this.#transactions.get(trx);
      if (!entry) {
        entry = { events: [], hooked: false, wrote: new Set() };
        this.#transactions.set(trx, entry);
      }
      entry.events.push(...events);
      if (!entry.hooked) {
        entry.hooked = true;
        const hooked = entry;
        this.#store.beforeCommit(() => this.#writeInTransaction(hooked));
      }
      return;
    }
    for (const e of events) this.#queue.push({ ...e, state: 'queued' });
    const group = this.#options.groupCommit;
    if (!group || this.#queue.length >= group.maxEvents) void this.#commitQueued();
    else if (!this.#groupScheduled) {
      this.#groupScheduled = true;
      setImmediate(() => {
        this.#groupScheduled = false;
        void this.#commitQueued();
      });
    }
  }

  /** The group commit: one at a time; when one ends, the next starts if events are waiting. */
  #commitQueued(): Promise<void> {
    this.#groupWrite ??= this.#writeQueued().finally(() => {
      this.#groupWrite = undefined;
      if (this.#queue.some((e) => e.state === 'queued')) void this.#commitQueued();
    });
    return this.#groupWrite;
  }

  async #writeQueued(): Promise<void> {
    if (!this.#queue.some((e) => e.state === 'queued')) return;
    let batch: QueuedEvent[] | undefined;
    try {
      await this.#store.transaction(
        async () => {
          // Taken once the transaction holds its connection: on SQLite no caller's transaction is
          // open then, half-way through writing some of them ahead of its own.
          batch ??= this.#take();
          const result = await writeChains(
            this.#store,
            batch.filter((e) => e.state === 'writing'),
            { from: () => this.#store.db, storedAt: (e) => e.writtenAt?.link, ...this.#remembered() },
          );
          // On PostgreSQL a caller's transaction may have chosen these events to write ahead of its
          // own before this commit took them, and be waiting for the chains' locks: it reads where
          // they are here, and finds them stored once this commits.
          for (const { event, link } of result.written) event.writtenAt = { link };
          this.#store.afterCommit(() => this.#committed(result));
        },
        { readCommitted: true },
      );
    } catch (error) {
      // Given up: what this commit held is not stored, and the next append says so. A commit that
      // could not begin (the database is gone) gives up what waited for it, rather than being
      // tried again at once, and again, for as long as the database stays away.
      for (const e of batch ?? this.#take()) if (e.state === 'writing') e.state = 'done';
      this.#sweep();
      this.#failure = error;
      this.#options.onError?.(error, 'commit');
    }
  }

  #take(): QueuedEvent[] {
    const batch = this.#queue.filter((e) => e.state === 'queued');
    for (const e of batch) e.state = 'writing';
    return batch;
  }

  /**
   * Writes a transaction's events just before it commits, and ahead of them the events of the same
   * tasks appended earlier and still waiting for a group commit, so that a chain keeps the order
   * of appends. Those stay queued until this transaction is known to have committed; if it rolls
   * back, the group commit finds them missing from the chain and writes them. On PostgreSQL the
   * group commit may also take them after they were chosen here and lock their chain first: this
   * transaction then finds them where that commit wrote them (read once the lock is held).
   */
  async #writeInTransaction(entry: TransactionEvents): Promise<void> {
    const own = entry.events;
    entry.events = [];
    entry.hooked = false;
    const tasks = new Set(own.map((e) => e.taskId));
    const inGroup = () => this.#queue.some((e) => e.state === 'writing' && tasks.has(e.taskId));
    // On PostgreSQL a group commit runs beside this transaction: earlier events of these tasks that
    // it is writing go first. Not once this transaction holds chains' locks, which it may need.
    if (this.#store.dialect === 'postgres' && entry.wrote.size === 0 && this.#groupWrite && inGroup())
      await this.#groupWrite;
    // Not those this transaction wrote already (in an earlier call): they are in it.
    const earlier = this.#queue.filter(
      (e) => e.state === 'queued' && tasks.has(e.taskId) && e.writtenAt?.by !== entry,
    );
    const events = [...earlier, ...own].sort((a, b) => a.n - b.n);
    const committed = this.#store.committed;
    const result = await writeChains(this.#store, events, {
      from: (taskId) => (committed && !entry.wrote.has(taskId) ? committed : this.#store.db),
      storedAt: (e) => (isQueued(e) ? e.writtenAt?.link : undefined),
      ...this.#remembered(),
    });
    for (const taskId of tasks) entry.wrote.add(taskId);
    for (const { event, link } of result.written) if (isQueued(event)) event.writtenAt = { link, by: entry };
    this.#store.afterCommit(() => this.#committed(result));
  }

  #remembered(): Pick<ChainReads<PreparedEvent>, 'remembered'> {
    return this.#store.dialect === 'sqlite' ? { remembered: (taskId) => this.#heads.get(taskId) } : {};
  }

  /** After a commit: the events it stored leave the queue, and listeners hear of them in append order. */
  #committed(result: ChainWrite<PreparedEvent>): void {
    if (this.#store.dialect === 'sqlite') {
      if (this.#heads.size > 50_000) this.#heads.clear();
      for (const { event, link } of [...result.found, ...result.written]) {
        const known = this.#heads.get(event.taskId);
        if (!known || link.seq > known.seq) this.#heads.set(event.taskId, { seq: link.seq, hash: link.hash });
      }
    }
    const stored = [...result.written, ...result.found]
      // Another commit may have told of a queued event already (it found it stored).
      .filter(({ event }) => !isQueued(event) || event.state !== 'done')
      .sort((a, b) => a.event.n - b.event.n);
    for (const { event } of stored) if (isQueued(event)) event.state = 'done';
    this.#sweep();
    for (const { event, link } of stored) this.#notify(event, link);
    this.#announce(stored);
  }

  #sweep(): void {
    this.#queue = this.#queue.filter((e) => e.state !== 'done');
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
      n: ++this.#appended,
      taskId,
      ts,
      type,
      storedJson: content ? canonicalJson({ [CONTENT_KEY]: content }) : dataJson,
      payloadJson: content?.kept ? dataJson : undefined,
      clean,
      content,
    };
  }

  #notify(e: PreparedEvent, link: ChainLink): void {
    if (this.#listeners.size === 0) return;
    const event: AuditEvent = {
      taskId: e.taskId,
      seq: link.seq,
      ts: e.ts,
      type: e.type,
      data: e.content && !e.content.kept ? {} : e.clean,
      prevHash: link.prevHash,
      hash: link.hash,
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
    for (const listener of this.#listeners) {
      // The event is stored whatever a listener does; its failure is its own.
      try {
        listener(event);
      } catch (error) {
        this.#options.onError?.(error, 'listener');
      }
    }
  }
}
