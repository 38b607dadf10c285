import { errorMessage } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { Store } from '../store/database.ts';
import type { Task } from '../tasks/task.ts';
import { type LifecycleDeps, recordTimeInQueue, runTaskToEnd } from '../tasks/task-lifecycle.ts';
import { TaskAbandoned, TaskCancelled } from '../tasks/task-runner.ts';
import type { TaskLeases, WorkerIdentity } from './task-leases.ts';

/** Channels every process on the database listens on (PostgreSQL NOTIFY; in-process on SQLite). */
export const TASKS_CHANNEL = 'airlock_tasks';
export const CANCEL_CHANNEL = 'airlock_cancel';

/** Why a worker stopped a task it was running: its lease ended, and the task is someone else's now. */
export class LeaseLost extends TaskAbandoned {
  constructor(taskId: string) {
    super(`this worker lost its lease on task ${taskId} (its heartbeat did not reach the database in time)`);
  }
}

/** What a worker needs: a task's lifecycle parts, the leases, who it is and its limits. */
export interface TaskWorkerDeps extends LifecycleDeps {
  store: Store;
  leases: TaskLeases;
  identity: WorkerIdentity;
  log: Logger;
  limits: { maxPerRepo: number };
  /** How often to look for queued work when no notification arrives (default 2 s). */
  pollMs?: number;
}

/**
 * Runs tasks on this host: claims queued ones under a lease (TaskLeases: within this worker's
 * capacity and the per-repository limit across every worker), runs each to its end
 * (runTaskToEnd), renews its leases on a heartbeat, and lets go of them as tasks end.
 *
 * It wakes for work on a notification (a task was queued, a lease was freed) and polls as a
 * fallback. A worker whose heartbeat cannot reach the database takes no new work and says so;
 * one that finds a lease gone stops that task at once without writing to it (whoever took the
 * lease recovers it). Cancelling a task that runs on another worker is asked for through the
 * database, and that worker stops it on its next notification or heartbeat.
 */
export class TaskWorker {
  readonly #deps: TaskWorkerDeps;
  readonly #running = new Map<string, { task: Task; controller: AbortController; done: Promise<void> }>();
  #stopped = false;
  #ticking: Promise<string[]> | null = null;
  #again = false;
  #databaseDown: string | null = null;
  #lastRenewal = 0;
  #cancelHeartbeat: () => void = () => {};
  #pollTimer: ReturnType<typeof setInterval> | undefined;
  #unlisten: Array<() => Promise<void>> = [];

  constructor(deps: TaskWorkerDeps) {
    this.#deps = deps;
  }

  get id(): string {
    return this.#deps.identity.id;
  }

  /** Registers the worker, starts its heartbeat, and listens for work and cancellations. */
  async start(): Promise<void> {
    const { store, leases, identity } = this.#deps;
    await leases.register(identity);
    this.#unlisten.push(await store.listen(TASKS_CHANNEL, () => void this.tick()));
    this.#unlisten.push(
      await store.listen(CANCEL_CHANNEL, (payload) => {
        const [taskId, ...by] = payload.split(' ');
        const running = taskId ? this.#running.get(taskId) : undefined;
        running?.controller.abort(new TaskCancelled(by.join(' ') || 'a person'));
      }),
    );
    this.#heartbeat();
    this.#poll();
  }

  /** Claims and starts what this worker may run now; returns the ids started. */
  tick(): Promise<string[]> {
    if (this.#ticking) {
      this.#again = true;
      return this.#ticking;
    }
    this.#ticking = this.#claim().finally(() => {
      this.#ticking = null;
      if (this.#again) {
        this.#again = false;
        void this.tick();
      }
    });
    return this.#ticking;
  }

  /** Ids of tasks running on this worker. */
  runningIds(): string[] {
    return [...this.#running.keys()];
  }

  /** Stops the tasks this worker runs that `by` cancelled; returns whether it ran it. */
  cancelHere(taskId: string, by: string): boolean {
    const running = this.#running.get(taskId);
    running?.controller.abort(new TaskCancelled(by));
    return running !== undefined;
  }

  /** Resolves once no task runs on this worker. */
  async idle(): Promise<void> {
    while (this.#running.size > 0) await Promise.all([...this.#running.values()].map((r) => r.done));
  }

  /** Takes no more work, cancels what runs (their cleanup included), and records the stop. */
  async stop(reason = 'airlock is shutting down'): Promise<void> {
    if (this.#stopped) return this.idle();
    this.#stopped = true;
    this.#cancelHeartbeat();
    clearInterval(this.#pollTimer);
    for (const unlisten of this.#unlisten) await unlisten().catch(() => undefined);
    for (const r of this.#running.values()) r.controller.abort(new TaskCancelled(reason));
    await this.#ticking?.catch(() => undefined);
    await this.idle();
    await this.#deps.leases.unregister(this.id).catch(() => undefined);
  }

  async #claim(): Promise<string[]> {
    if (this.#stopped || this.#databaseDown) return [];
    const free = this.#deps.identity.capacity - this.#running.size;
    if (free <= 0) return [];
    let claimed: Task[];
    try {
      claimed = await this.#deps.leases.claim(this.id, { free, maxPerRepo: this.#deps.limits.maxPerRepo });
    } catch (error) {
      this.#deps.log.warn({ err: errorMessage(error) }, 'claiming queued tasks failed');
      return [];
    }
    for (const task of claimed) this.#start(task);
    return claimed.map((t) => t.id);
  }

  #start(claimed: Task): void {
    const deps = this.#deps;
    const controller = new AbortController();
    const log = deps.log.child({
      taskId: claimed.id,
      installation: claimed.installationId,
      repo: claimed.repoFullName,
      deliveryId: claimed.deliveryId,
      worker: this.id,
    });
    recordTimeInQueue(deps.tracer, claimed, deps.clock.now());
    const done = (async () => {
      // The claim wrote `starting`; its record and listeners hear of it as of any state change.
      deps.audit.append(claimed.id, 'task.state', { state: claimed.state, reason: claimed.reason });
      deps.audit.append(claimed.id, 'task.claimed', {
        worker: this.id,
        host: deps.identity.host,
        leaseSeconds: deps.leases.leaseMs / 1000,
      });
      await deps.onState?.(claimed);
      await runTaskToEnd(deps, claimed, { signal: controller.signal, log });
    })()
      .catch((error) => log.error({ err: errorMessage(error) }, 'task bookkeeping failed'))
      .finally(async () => {
        this.#running.delete(claimed.id);
        await deps.leases.release(claimed.id, this.id).catch(() => undefined);
        queueMicrotask(() => void this.tick());
      });
    this.#running.set(claimed.id, { task: claimed, controller, done });
  }

  /** Renews this worker's leases a few times per lease; stops what it no longer holds. */
  #heartbeat(): void {
    const { leases, clock, log } = this.#deps;
    const every = Math.max(1000, Math.floor(leases.leaseMs / 3));
    this.#lastRenewal = clock.now().getTime();
    const beat = async () => {
      if (this.#stopped) return;
      try {
        // Only tasks claimed before the renewal began can be judged by it: one claimed while it
        // ran may be missing from what it renewed, and is not lost.
        const before = new Set(this.#running.keys());
        const held = await leases.renew(this.id);
        this.#lastRenewal = clock.now().getTime();
        if (this.#databaseDown) {
          log.info({ worker: this.id }, 'the database answers again: taking work');
          this.#databaseDown = null;
          void this.tick();
        }
        for (const [taskId, running] of this.#running) {
          if (before.has(taskId) && !held.has(taskId) && !running.controller.signal.aborted) {
            log.error({ taskId, worker: this.id }, 'lease lost: stopping the task without writing to it');
            running.controller.abort(new LeaseLost(taskId));
          }
        }
        const cancels = await this.#deps.store.db
          .selectFrom('tasks')
          .select(['id', 'cancel_requested_by'])
          .where('lease_owner', '=', this.id)
          .where('cancel_requested_by', 'is not', null)
          .execute();
        for (const c of cancels) this.cancelHere(c.id, c.cancel_requested_by ?? 'a person');
      } catch (error) {
        const why = errorMessage(error);
        if (!this.#databaseDown)
          log.error(
            { worker: this.id, err: why },
            'cannot reach the database: taking no new work until it answers',
          );
        this.#databaseDown = why;
        // Past the lease, another process has recovered these tasks: stop them here.
        if (clock.now().getTime() - this.#lastRenewal > leases.leaseMs)
          for (const [taskId, running] of this.#running)
            if (!running.controller.signal.aborted) running.controller.abort(new LeaseLost(taskId));
      }
    };
    const schedule = () => {
      const cancel = clock.after(every, () => {
        void beat().finally(() => {
          if (!this.#stopped) schedule();
        });
      });
      this.#cancelHeartbeat = cancel;
    };
    schedule();
  }

  #poll(): void {
    const pollMs = this.#deps.pollMs ?? 2000;
    this.#pollTimer = setInterval(() => void this.tick(), pollMs);
    this.#pollTimer.unref();
  }
}
