import { sql } from 'kysely';
import type { Clock } from '../clock.ts';
import type { Store } from '../store/database.ts';
import { ACTIVE_STATES, type Task } from '../tasks/task.ts';
import { rowToTask } from '../tasks/task-store.ts';

/** Who a worker is: one process, on one host, running up to `capacity` tasks at once. */
export interface WorkerIdentity {
  id: string;
  host: string;
  pid: number;
  capacity: number;
}

/** How many tasks a claim may take: the worker's free slots, and the per-repository limit. */
export interface ClaimLimits {
  free: number;
  maxPerRepo: number;
}

/** Queued tasks looked at per claim, oldest first; tasks a claim skips wait for a later one. */
const CANDIDATES = 64;

/**
 * Leases on tasks: how workers (in one process or many, on SQLite or PostgreSQL) take queued
 * tasks without two ever running one, and how a task whose worker died is found.
 *
 * A claim moves queued tasks to `starting` under the worker's lease, within the worker's free
 * slots and the per-repository limit counted across every worker, one task per branch at a time
 * and in arrival order on each branch. On PostgreSQL it reads candidates with `FOR UPDATE SKIP
 * LOCKED` (competing workers pass over each other's rows instead of waiting) and takes a
 * transaction-scoped advisory lock per repository it claims in, so two workers cannot both count
 * a repository's running tasks, see room, and exceed its limit. On SQLite one connection
 * serialises claims.
 *
 * A lease lasts `leaseMs` from its last renewal. A worker renews its leases (its heartbeat) well
 * within that; one whose lease ended has lost the task, which `takeExpired` hands to recovery.
 * Times are the injected clock's: hosts keep their clocks in sync (NTP), far inside the lease.
 */
export class TaskLeases {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #leaseMs: number;

  constructor(store: Store, clock: Clock, options: { leaseMs: number }) {
    this.#store = store;
    this.#clock = clock;
    this.#leaseMs = options.leaseMs;
  }

  get leaseMs(): number {
    return this.#leaseMs;
  }

  /** Records a worker that starts (or starts again under the same id). */
  async register(worker: WorkerIdentity): Promise<void> {
    const now = this.#now();
    await this.#store.db
      .insertInto('workers')
      .values({ ...worker, started_at: now, heartbeat_at: now, stopped_at: null })
      .onConflict((oc) =>
        oc.column('id').doUpdateSet({ capacity: worker.capacity, heartbeat_at: now, stopped_at: null }),
      )
      .execute();
  }

  /** Records that a worker stopped on purpose (its tasks were ended or handed back first). */
  async unregister(workerId: string): Promise<void> {
    await this.#store.db
      .updateTable('workers')
      .set({ stopped_at: this.#now() })
      .where('id', '=', workerId)
      .execute();
  }

  /**
   * Takes queued tasks for `workerId` within `limits`; returns them, now `starting` and leased.
   * Two statements in one transaction, whatever the number of tasks: the first takes the
   * candidates (and on PostgreSQL their row locks and their repositories' claim locks), the second
   * decides and writes, reading what committed up to the moment it began, so after the locks.
   */
  async claim(workerId: string, limits: ClaimLimits): Promise<Task[]> {
    if (limits.free <= 0) return [];
    const postgres = this.#store.dialect === 'postgres';
    return this.#store.transaction(
      async () => {
        const ids = postgres ? await this.#lockCandidates() : await this.#candidates();
        if (ids.length === 0) return [];
        const active = sql.join(ACTIVE_STATES.map((state) => sql.lit(state)));
        const now = this.#now();
        // Of the candidates: those whose branch no active task holds and no task queued earlier
        // waits for, in arrival order, within the room their repository has left; at most `free`.
        const { rows } = await sql<{ created_at: string; seq: number | string | null }>`
          WITH candidates AS (
            SELECT id, repo_full_name, branch, created_at, seq FROM tasks
            WHERE id IN (${sql.join(ids)}) AND state = 'queued'
          ),
          branch_free AS (
            SELECT c.* FROM candidates c
            WHERE NOT EXISTS (
              SELECT 1 FROM tasks o
              WHERE o.repo_full_name = c.repo_full_name AND o.branch = c.branch AND o.id <> c.id
                AND (o.state IN (${active})
                  OR (o.state IN ('queued', 'awaiting_approval')
                    AND (o.created_at < c.created_at OR (o.created_at = c.created_at AND o.seq < c.seq))))
            )
          ),
          ranked AS (
            SELECT f.id, f.created_at, f.seq,
              row_number() OVER (PARTITION BY f.repo_full_name ORDER BY f.created_at, f.seq) AS nth,
              (SELECT count(*) FROM tasks a
                WHERE a.repo_full_name = f.repo_full_name AND a.state IN (${active})) AS running
            FROM branch_free f
          ),
          chosen AS (
            SELECT id FROM ranked WHERE running + nth <= ${limits.maxPerRepo}
            ORDER BY created_at, seq LIMIT ${limits.free}
          )
          UPDATE tasks SET state = 'starting', lease_owner = ${workerId},
            lease_expires_at = ${this.#until()}, started_at = ${now}, updated_at = ${now}
          WHERE id IN (SELECT id FROM chosen) AND state = 'queued'
          RETURNING *`.execute(this.#store.db);
        return rows
          .sort((a, b) => a.created_at.localeCompare(b.created_at) || Number(a.seq) - Number(b.seq))
          .map(rowToTask);
      },
      { readCommitted: true },
    );
  }

  /** The oldest queued tasks (SQLite: one connection serialises claims, nothing to lock). */
  async #candidates(): Promise<string[]> {
    const rows = await this.#store.db
      .selectFrom('tasks')
      .select('id')
      .where('state', '=', 'queued')
      .orderBy('created_at')
      .orderBy('seq')
      .limit(CANDIDATES)
      .execute();
    return rows.map((r) => r.id);
  }

  /**
   * PostgreSQL: locks the oldest queued tasks no other claim holds (`SKIP LOCKED`: competing
   * workers pass over each other's rows instead of waiting) and tries each one's repository claim
   * lock (transaction-scoped), so two workers cannot both count a repository's running tasks, see
   * room, and exceed its limit. Returns the candidates whose repository lock this claim holds; the
   * others wait for a later claim.
   */
  async #lockCandidates(): Promise<string[]> {
    const { rows } = await sql<{ id: string; locked: boolean }>`
      SELECT id, pg_try_advisory_xact_lock(hashtext('airlock.claim'), hashtext(repo_full_name)) AS locked
      FROM (
        SELECT id, repo_full_name, created_at, seq FROM tasks WHERE state = 'queued'
        ORDER BY created_at, seq LIMIT ${CANDIDATES} FOR UPDATE SKIP LOCKED
      ) candidates
      ORDER BY created_at, seq`.execute(this.#store.db);
    return rows.filter((r) => r.locked).map((r) => r.id);
  }

  /**
   * The heartbeat: extends `workerId`'s leases on its running tasks and records that it is alive.
   * Returns the ids of the tasks it still holds; a task it runs that is not among them was taken
   * from it (its lease had ended) and must be stopped.
   */
  async renew(workerId: string): Promise<Set<string>> {
    const now = this.#now();
    return this.#store.transaction(async () => {
      await this.#store.db
        .updateTable('workers')
        .set({ heartbeat_at: now })
        .where('id', '=', workerId)
        .execute();
      const held = await this.#store.db
        .updateTable('tasks')
        .set({ lease_expires_at: this.#until() })
        .where('lease_owner', '=', workerId)
        .where('state', 'in', ACTIVE_STATES)
        .returning('id')
        .execute();
      return new Set(held.map((r) => r.id));
    });
  }

  /**
   * Lets go of a task at the end of its run. One that has ended (or gone back to the queue) is
   * simply let go. One the run left active (its ending could not be written: the database failed
   * it, say) is not: its lease is ended now, so the next sweep recovers it by the restart rules
   * instead of leaving it `starting` or `running` with no one to finish it.
   */
  async release(taskId: string, workerId: string): Promise<void> {
    await this.#store.transaction(async () => {
      await this.#store.db
        .updateTable('tasks')
        .set({ lease_owner: null, lease_expires_at: null })
        .where('id', '=', taskId)
        .where('lease_owner', '=', workerId)
        .where('state', 'not in', ACTIVE_STATES)
        .execute();
      await this.#store.db
        .updateTable('tasks')
        .set({ lease_expires_at: new Date(this.#clock.now().getTime() - 1).toISOString() })
        .where('id', '=', taskId)
        .where('lease_owner', '=', workerId)
        .where('state', 'in', ACTIVE_STATES)
        .execute();
    });
  }

  /**
   * Takes over, for `workerId`, the running tasks whose lease ended (their worker stopped
   * renewing), so that exactly one process recovers each: returns them, leased to `workerId`.
   */
  async takeExpired(workerId: string): Promise<Task[]> {
    const now = this.#now();
    const taken = await this.#store.db
      .updateTable('tasks')
      .set({ lease_owner: workerId, lease_expires_at: this.#until() })
      .where('state', 'in', ACTIVE_STATES)
      .where('lease_expires_at', '<', now)
      .returningAll()
      .execute();
    return taken.map(rowToTask);
  }

  /**
   * Takes over the running tasks of workers that are certainly gone: on SQLite, every one but
   * `workerId` (one process is all there is, so they belong to its previous life); with
   * `previousIds`, the tasks of those worker ids (a worker restarting under its stable id).
   */
  async takeFromGone(workerId: string, previousIds: readonly string[] = []): Promise<Task[]> {
    const until = this.#until();
    const sole = this.#store.dialect === 'sqlite';
    if (!sole && previousIds.length === 0) return [];
    const taken = await this.#store.db
      .updateTable('tasks')
      .set({ lease_owner: workerId, lease_expires_at: until })
      .where('state', 'in', ACTIVE_STATES)
      .where((eb) =>
        sole
          ? eb.or([eb('lease_owner', 'is', null), eb('lease_owner', '!=', workerId)])
          : eb('lease_owner', 'in', previousIds),
      )
      .returningAll()
      .execute();
    return taken.map(rowToTask);
  }

  /** The workers heard from (a heartbeat, or their start) at or after `since` (ISO time). */
  async seenSince(since: string): Promise<Set<string>> {
    const rows = await this.#store.db
      .selectFrom('workers')
      .select('id')
      .where('heartbeat_at', '>=', since)
      .execute();
    return new Set(rows.map((r) => r.id));
  }

  /** Workers and their last heartbeat, newest first (for the operator's view). */
  async workers(): Promise<
    Array<WorkerIdentity & { startedAt: string; heartbeatAt: string; stoppedAt: string | null }>
  > {
    const rows = await this.#store.db
      .selectFrom('workers')
      .selectAll()
      .orderBy('heartbeat_at', 'desc')
      .execute();
    return rows.map((r) => ({
      id: r.id,
      host: r.host,
      pid: r.pid,
      capacity: r.capacity,
      startedAt: r.started_at,
      heartbeatAt: r.heartbeat_at,
      stoppedAt: r.stopped_at,
    }));
  }

  #now(): string {
    return this.#clock.now().toISOString();
  }

  #until(): string {
    return new Date(this.#clock.now().getTime() + this.#leaseMs).toISOString();
  }
}
