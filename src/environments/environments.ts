import { mkdir, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { AuditSink } from '../audit-sink.ts';
import type { Clock } from '../clock.ts';
import { maxAgeMs } from '../config/repo-config.ts';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { VmSnapshot } from '../sandbox/sandbox.ts';
import type { Task } from '../tasks/task.ts';
import { TaskFailure } from '../tasks/task-runner.ts';
import { type BuildQueue, WORKER_GONE_MS } from './build-queue.ts';
import { runBuild } from './build-run.ts';
import type { EnvironmentBuilder } from './environment-builder.ts';
import { type Collection, environmentsToCollect } from './environment-gc.ts';
import { type EnvironmentConfig, environmentSpecHash, hasEnvironment } from './environment-key.ts';
import type { EnvironmentBuild, EnvironmentRecord, EnvironmentStore, NewBuild } from './environment-store.ts';

/** A current environment unused this long is collected. */
export const ENV_IDLE_MS = 30 * 86_400_000;
const GC_INTERVAL_MS = 3600_000;
/** A running build's row is renewed this often; one not renewed for BUILD_STALE_MS is failed. */
const BUILD_HEARTBEAT_MS = 10_000;
const BUILD_STALE_MS = 60_000;

/** What the environments need from the rest of airlock. */
export interface EnvironmentsDeps {
  /** Opened for this host (a worker's name on PostgreSQL; none on one host). */
  store: EnvironmentStore;
  /** Where builds are asked for; its wake() starts this host's next build. */
  queue: BuildQueue;
  /**
   * Hears builds queued by other processes (PostgreSQL LISTEN on BUILDS_CHANNEL); absent on one
   * host. With it, builds whose worker stopped renewing them are also swept.
   */
  listen?: (onMessage: () => void) => Promise<() => Promise<void>>;
  /** Renewal of a running build and how long one may go unrenewed (tests shorten them). */
  heartbeatMs?: number;
  staleAfterMs?: number;
  builder: EnvironmentBuilder;
  audit: AuditSink;
  clock: Clock;
  log: Logger;
  dataDir: string;
  /** AIRLOCK_ENV_DISK_GIB, in bytes. */
  diskBudgetBytes: number;
}

/** An environment a task restores from; released when the task's VM is gone. */
export interface EnvironmentLease {
  env: EnvironmentRecord;
  snapshot: VmSnapshot;
  release(): void;
}

/** Told of every build that ended (succeeded, failed or interrupted). */
export type BuildListener = (build: EnvironmentBuild) => void;

/**
 * Environments: builds as durable jobs, one at a time, each into its own directory under
 * `$AIRLOCK_DATA_DIR/environments`, recorded in a table only once complete; the current
 * environment of a repository for its tasks (a stale one keeps serving while its successor builds);
 * and garbage collection by age and disk budget. Never deletes what a task or build holds.
 */
export class Environments {
  readonly #deps: EnvironmentsDeps;
  readonly #listeners: BuildListener[] = [];
  readonly #waiters = new Map<string, Array<(build: EnvironmentBuild) => void>>();
  readonly #leases = new Map<string, number>();
  readonly #stop = new AbortController();
  #running: Promise<void> | undefined;
  /** Woken while a look at the queue was under way. */
  #again = false;
  #started = false;
  #gcTimer: ReturnType<typeof setInterval> | undefined;
  #sweepTimer: ReturnType<typeof setInterval> | undefined;
  #unlisten: (() => Promise<void>) | undefined;

  constructor(deps: EnvironmentsDeps) {
    this.#deps = deps;
    deps.queue.onWake(() => this.#pump());
  }

  /** The builds and environments as stored. */
  get store(): EnvironmentStore {
    return this.#deps.store;
  }

  /** Where environments' snapshot directories live. */
  get root(): string {
    return path.join(this.#deps.dataDir, 'environments');
  }

  /** Adds a listener for builds that end (the GitHub plane reports failures). */
  onBuildFinished(listener: BuildListener): void {
    this.#listeners.push(listener);
  }

  /**
   * Recovers from the previous process, then runs queued builds: a build that was running is
   * failed as interrupted, and every directory under the environments root that is not a ready
   * environment (a half-made snapshot) is removed.
   */
  async start(): Promise<{ interrupted: string[]; removed: string[] }> {
    const { store } = this.#deps;
    const interrupted: string[] = [];
    for (const build of await store.buildsIn('running')) {
      const reason = 'interrupted: airlock stopped during the build; what it had made was removed';
      if (await this.#interrupt(build, reason, '')) interrupted.push(build.id);
    }
    await mkdir(this.root, { recursive: true });
    const ready = new Map((await store.ready()).map((env) => [path.basename(env.dir), env]));
    const removed: string[] = [];
    for (const entry of await readdir(this.root)) {
      if (ready.has(entry)) continue;
      await rm(path.join(this.root, entry), { recursive: true, force: true });
      removed.push(entry);
    }
    for (const env of ready.values()) {
      const present = await readdir(env.dir).then(
        () => true,
        () => false,
      );
      if (!present) await store.markCollected(env.id, 'its files were missing at start');
    }
    if (interrupted.length || removed.length)
      this.#deps.log.warn({ interrupted, removed }, 'recovered environment builds');
    this.#started = true;
    await this.collect();
    this.#gcTimer = setInterval(() => void this.collect().catch(() => {}), GC_INTERVAL_MS);
    this.#gcTimer.unref();
    if (this.#deps.listen) {
      this.#unlisten = await this.#deps.listen(() => this.#pump());
      const staleMs = this.#deps.staleAfterMs ?? BUILD_STALE_MS;
      this.#sweepTimer = setInterval(() => void this.sweep(), Math.max(1000, staleMs / 2));
      this.#sweepTimer.unref();
    }
    this.#pump();
    return { interrupted, removed };
  }

  /**
   * The environment a task restores from, or undefined when its repository configures none. With
   * no environment yet, the task waits for a build (its own, or one already under way) and fails
   * with the build's reason if it fails. A stale environment (older than `max_age`, or built for
   * another config) serves while a new one builds.
   */
  async forTask(task: Task, signal: AbortSignal): Promise<EnvironmentLease | undefined> {
    const { config } = task;
    if (!hasEnvironment(config)) return undefined;
    const { store, audit } = this.#deps;
    const usable = await this.#usableCurrent(task.repoFullName);
    if (usable) {
      const { env } = usable;
      const stale = await this.#staleness(env, config);
      if (stale) await this.#requestIfNone(task, config, { kind: 'stale', detail: stale });
      audit.append(task.id, 'environment.restore', {
        environment: env.id,
        build: env.buildId,
        commit: env.commitSha,
        key: env.envKey,
        ...(stale ? { stale } : {}),
      });
      return await this.#lease(usable.env, usable.snapshot);
    }
    const build = await this.#requestIfNone(task, config, { kind: 'task' });
    audit.append(task.id, 'environment.waiting', { build: build.id });
    const ended = await this.waitFor(build.id, signal);
    const made = ended.environmentId ? await store.environment(ended.environmentId) : undefined;
    const snapshot = made?.state === 'ready' ? await this.#deps.builder.open(made.dir) : undefined;
    if (ended.state !== 'succeeded' || !made || !snapshot) {
      throw new TaskFailure(
        'setup_failed',
        `the environment build ${ended.id} failed and ${task.repoFullName} has no earlier environment: ${ended.reason ?? 'no reason recorded'}`,
      );
    }
    audit.append(task.id, 'environment.restore', {
      environment: made.id,
      build: made.buildId,
      commit: made.commitSha,
      key: made.envKey,
    });
    return await this.#lease(made, snapshot);
  }

  /**
   * Queues a build on this host unless one that covers the request is queued or running here
   * (see BuildQueue.enqueue), and starts it when it can.
   */
  async request(input: NewBuild): Promise<EnvironmentBuild> {
    const { queue, store } = this.#deps;
    const [build] = await queue.enqueue({ ...input, host: store.host });
    queue.wake();
    return build!;
  }

  /** Where builds are asked for (intake queues pushes' and `/airlock rebuild`'s here). */
  get queue(): BuildQueue {
    return this.#deps.queue;
  }

  /**
   * Fails the running builds, on any host, whose worker has stopped renewing them (killed, or its
   * host lost): they would otherwise show as running for ever, and no push could rebuild there.
   * Exactly one sweeping process fails each; it reports it as this host's own build failures are.
   */
  async sweep(): Promise<EnvironmentBuild[]> {
    const { store, clock, log } = this.#deps;
    const staleMs = this.#deps.staleAfterMs ?? BUILD_STALE_MS;
    const swept: EnvironmentBuild[] = [];
    try {
      const before = new Date(clock.now().getTime() - staleMs).toISOString();
      const lost: Array<{ build: EnvironmentBuild; reason: string }> = [];
      for (const build of await store.staleRunning(before)) {
        // This host's own builds are its to end (start() fails what a restart left).
        if (build.host === store.host) continue;
        const reason = `interrupted: its worker ${build.host ?? '(unnamed)'} stopped renewing the build for ${Math.round(staleMs / 1000)} s`;
        lost.push({ build, reason });
      }
      // Queued for a host whose worker is gone: nobody else may run them, and it will not.
      const alive = await this.#deps.queue.hostsAlive();
      if (alive) {
        for (const build of await store.queuedOnNamedHosts()) {
          if (build.host === null || build.host === store.host || alive.has(build.host)) continue;
          const reason = `interrupted: its worker ${build.host} has not been heard from for ${Math.round(WORKER_GONE_MS / 60_000)} minutes, so it was never started; the next task that needs the environment builds it on its own worker`;
          lost.push({ build, reason });
        }
      }
      for (const { build, reason } of lost) {
        const failed = await this.#interrupt(build, reason, build.logTail ?? '', { sweptBy: store.host });
        if (!failed) continue;
        log.warn({ build: build.id, host: build.host }, 'environment build of a lost worker failed');
        swept.push(failed);
      }
    } catch (error) {
      log.warn({ err: errorMessage(error) }, 'sweeping lost environment builds failed');
    }
    return swept;
  }

  /** Resolves once a build has ended; rejects when `signal` aborts first. */
  waitFor(buildId: string, signal?: AbortSignal): Promise<EnvironmentBuild> {
    return new Promise((resolve, reject) => {
      const list = this.#waiters.get(buildId) ?? [];
      const done = (build: EnvironmentBuild) => {
        signal?.removeEventListener('abort', onAbort);
        resolve(build);
      };
      const onAbort = () => {
        const left = (this.#waiters.get(buildId) ?? []).filter((w) => w !== done);
        this.#waiters.set(buildId, left);
        reject(signal?.reason);
      };
      if (signal?.aborted) return reject(signal.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      list.push(done);
      this.#waiters.set(buildId, list);
      // Registered first, then read: a build that ends in between is heard of either way.
      this.#deps.store.build(buildId).then((now) => {
        if (now.state !== 'succeeded' && now.state !== 'failed') return;
        this.#waiters.set(
          buildId,
          (this.#waiters.get(buildId) ?? []).filter((w) => w !== done),
        );
        done(now);
      }, reject);
    });
  }

  /** A build's log (what its commands printed), as far as it was written. */
  log(buildId: string): Promise<string> {
    return this.#deps.store.readLog(buildId);
  }

  /** Deletes what the age and disk budget no longer allow (see environmentsToCollect). */
  async collect(): Promise<Collection[]> {
    const { store, clock } = this.#deps;
    const chosen = environmentsToCollect(await store.ready(), {
      now: clock.now(),
      idleMs: ENV_IDLE_MS,
      budgetBytes: this.#deps.diskBudgetBytes,
      inUse: new Set([...this.#leases].filter(([, n]) => n > 0).map(([id]) => id)),
    });
    for (const { env, why } of chosen) {
      await this.#retire(env);
      // The row goes first: a crash in between leaves a directory that start() removes.
      await store.markCollected(env.id, why);
      await rm(env.dir, { recursive: true, force: true });
      this.#deps.audit.append(env.buildId, 'environment.collected', { environment: env.id, why });
      this.#deps.log.info({ environment: env.id, repo: env.repoFullName, why }, 'environment collected');
    }
    return chosen;
  }

  /** Stops: the running build is aborted (and fails as interrupted); waits for it. */
  async stop(): Promise<void> {
    if (this.#gcTimer) clearInterval(this.#gcTimer);
    if (this.#sweepTimer) clearInterval(this.#sweepTimer);
    await this.#unlisten?.();
    this.#stop.abort(new Error('airlock is shutting down'));
    await this.#running;
  }

  async #usableCurrent(
    repoFullName: string,
  ): Promise<{ env: EnvironmentRecord; snapshot: VmSnapshot } | undefined> {
    const { store } = this.#deps;
    const current = await store.current(repoFullName);
    if (!current) return undefined;
    const snapshot = await this.#deps.builder.open(current.dir);
    if (snapshot) return { env: current, snapshot };
    if (!this.#leases.get(current.id)) {
      await store.markCollected(
        current.id,
        'its snapshot no longer restores here (another image, QEMU or host)',
      );
      await rm(current.dir, { recursive: true, force: true });
    }
    return undefined;
  }

  /** Why an environment should be rebuilt for a task's config, or undefined while it is current. */
  async #staleness(env: EnvironmentRecord, config: EnvironmentConfig): Promise<string | undefined> {
    const { store, clock, builder } = this.#deps;
    // A build since this environment failed: rebuilding again on every task would only fail again;
    // a push to a key file or /airlock rebuild asks anew.
    const last = await store.lastFinishedBuild(env.repoFullName);
    if (last && last.state === 'failed' && last.createdAt > env.createdAt) return undefined;
    if (env.specHash !== environmentSpecHash(config, builder.imageDigest))
      return "the repository's environment configuration changed";
    const age = clock.now().getTime() - Date.parse(env.createdAt);
    if (age > maxAgeMs(config.environment.max_age))
      return `older than its max_age of ${config.environment.max_age}`;
    return undefined;
  }

  #requestIfNone(
    task: Task,
    config: EnvironmentConfig,
    why: { kind: 'task' | 'stale'; detail?: string },
  ): Promise<EnvironmentBuild> {
    const issueNumber = task.issueNumber ?? task.prNumber;
    return this.request({
      repoFullName: task.repoFullName,
      repoId: task.repoId,
      installationId: task.installationId,
      config,
      trigger: {
        kind: task.kind === 'local' ? 'local' : why.kind,
        by: task.actorLogin,
        taskId: task.id,
        ...(issueNumber !== null ? { issueNumber } : {}),
        ...(task.triggerUrl ? { url: task.triggerUrl } : {}),
        ...(why.detail ? { detail: why.detail } : {}),
      },
    });
  }

  async #lease(env: EnvironmentRecord, snapshot: VmSnapshot): Promise<EnvironmentLease> {
    // Held before the write: a collection meanwhile must see it in use.
    this.#leases.set(env.id, (this.#leases.get(env.id) ?? 0) + 1);
    await this.#deps.store.touch(env.id);
    let released = false;
    return {
      env,
      snapshot,
      release: () => {
        if (released) return;
        released = true;
        this.#leases.set(env.id, (this.#leases.get(env.id) ?? 1) - 1);
      },
    };
  }

  #pump(): void {
    if (!this.#started || this.#stop.signal.aborted) return;
    if (this.#running) {
      // Looked at (or running) already: look again once it is done, in case the queue changed.
      this.#again = true;
      return;
    }
    this.#again = false;
    let ran = false;
    this.#running = (async () => {
      const next = (await this.#deps.store.buildsIn('queued', 1))[0];
      if (!next) return;
      ran = true;
      await this.#run(next).catch((error) =>
        this.#deps.log.error({ err: errorMessage(error), build: next.id }, 'build bookkeeping failed'),
      );
    })()
      .catch((error) => this.#deps.log.error({ err: errorMessage(error) }, 'queued builds could not be read'))
      .finally(() => {
        this.#running = undefined;
        if (ran || this.#again) this.#pump();
      });
  }

  async #run(queued: EnvironmentBuild): Promise<void> {
    const ran = await runBuild(
      { ...this.#deps, root: this.root, heartbeatMs: this.#deps.heartbeatMs ?? BUILD_HEARTBEAT_MS },
      queued,
      this.#stop.signal,
    );
    // Another worker took it: look at the queue again.
    if (!ran) return;
    const { ended, superseded } = ran;
    // Its warm VMs go now; its files once no task holds it (collect, below).
    if (superseded) await this.#retire(superseded);
    this.#finished(ended);
    await this.collect();
  }

  /** Drops what the sandbox keeps warm for an environment; a failure is logged, never fatal. */
  async #retire(env: EnvironmentRecord): Promise<void> {
    await this.#deps.builder
      .retire(env.dir)
      .catch((error) =>
        this.#deps.log.warn({ err: errorMessage(error), environment: env.id }, 'could not drain warm VMs'),
      );
  }

  /**
   * Fails a build this process did not see end, records it in its chain and tells the listeners;
   * undefined when another process ended it first.
   */
  async #interrupt(
    build: EnvironmentBuild,
    reason: string,
    logTail: string,
    extra: Record<string, unknown> = {},
  ): Promise<EnvironmentBuild | undefined> {
    const failed = await this.#deps.store.failBuild(build.id, reason, logTail);
    if (!failed) return undefined;
    this.#deps.audit.append(build.id, 'build.outcome', { state: 'failed', reason, ...extra });
    this.#finished(failed);
    return failed;
  }

  #finished(build: EnvironmentBuild): void {
    const waiting = this.#waiters.get(build.id) ?? [];
    this.#waiters.delete(build.id);
    for (const resolve of waiting) resolve(build);
    for (const listener of this.#listeners) {
      try {
        listener(build);
      } catch (error) {
        this.#deps.log.error({ err: errorMessage(error), build: build.id }, 'build listener failed');
      }
    }
  }
}
