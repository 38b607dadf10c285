import type { AuditSink } from '../audit-sink.ts';
import type { Clock } from '../clock.ts';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { EnvironmentBuild, EnvironmentStore, NewBuild } from './environment-store.ts';

/** PostgreSQL channel a queued build is announced on: every worker looks for one it may run. */
export const BUILDS_CHANNEL = 'airlock_builds';

/**
 * A worker not heard from for this long is gone: no build is queued for its host any more, and the
 * builds it left queued are failed (a worker restarting under its name is back within it).
 */
export const WORKER_GONE_MS = 10 * 60_000;

/** What the build queue needs. */
export interface BuildQueueDeps {
  store: EnvironmentStore;
  audit: AuditSink;
  log: Logger;
  /** Tells other processes (PostgreSQL NOTIFY on BUILDS_CHANNEL); none on one host. */
  notify?: () => Promise<void>;
  clock: Clock;
  /**
   * Which workers were heard from since a time (several hosts: the `workers` table); when unset,
   * every host that has an environment is taken to be there (one host).
   */
  workers?: { seenSince(since: string): Promise<ReadonlySet<string>> };
}

/**
 * Where environment builds are asked for, on any process: a task on the host that runs it, a push
 * to a key file or `/airlock rebuild` on the process that takes webhooks.
 *
 * A snapshot restores only on the host that made it, so a build is queued for a host. A task asks
 * for its own host. A push or a rebuild asks again of every host that holds (or is making) an
 * environment of the repository; when none does, one build any host may take. On one host all of
 * this is the one host.
 */
export class BuildQueue {
  readonly #deps: BuildQueueDeps;
  readonly #wakers: Array<() => void> = [];

  constructor(deps: BuildQueueDeps) {
    this.#deps = deps;
  }

  /** Called by wake(): this process's builder looks at the queue. */
  onWake(waker: () => void): void {
    this.#wakers.push(waker);
  }

  /**
   * Queues the builds a request calls for (see the class) and returns the ones that will serve it,
   * one per host. Per host, a queued build covers every request (it has not cloned yet); a running
   * one covers tasks and staleness, but not a push or `/airlock rebuild`, whose change it may have
   * cloned too early: those queue one more behind it. Only writes (inside the caller's transaction,
   * if any): call wake() once it is committed.
   */
  async enqueue(input: NewBuild): Promise<EnvironmentBuild[]> {
    const { store } = this.#deps;
    return store.transaction(async () => {
      const hosts = input.host !== undefined ? [input.host] : await this.#hostsHolding(input.repoFullName);
      const builds: EnvironmentBuild[] = [];
      for (const host of hosts.length ? hosts : [null])
        builds.push(await this.#enqueueOn(store.forHost(host), { ...input, host }));
      return builds;
    });
  }

  /** Wakes the builders: this process's, and (on PostgreSQL) every worker's. */
  wake(): void {
    for (const waker of this.#wakers) waker();
    this.#deps
      .notify?.()
      .catch((error) =>
        this.#deps.log.warn({ err: errorMessage(error) }, 'could not announce a queued build'),
      );
  }

  /** The named hosts whose worker was heard from within WORKER_GONE_MS; undefined on one host. */
  async hostsAlive(): Promise<ReadonlySet<string> | undefined> {
    const { workers, clock } = this.#deps;
    return workers?.seenSince(new Date(clock.now().getTime() - WORKER_GONE_MS).toISOString());
  }

  /**
   * The hosts that hold or make an environment of the repository and are still there: a host whose
   * worker is gone for good would never run its build, while a live one takes an untaken build.
   */
  async #hostsHolding(repoFullName: string): Promise<Array<string | null>> {
    const hosts = await this.#deps.store.hostsOf(repoFullName);
    const alive = await this.hostsAlive();
    if (!alive) return hosts;
    const gone = hosts.filter((host) => host !== null && !alive.has(host));
    if (gone.length)
      this.#deps.log.info(
        { repository: repoFullName, gone },
        'no build queued for hosts whose worker is gone',
      );
    return hosts.filter((host) => host === null || alive.has(host));
  }

  async #enqueueOn(store: EnvironmentStore, input: NewBuild): Promise<EnvironmentBuild> {
    // A build for any host is covered only by another for any host, not by one a named host owns
    // (that host's worker may be gone).
    const open = (state: 'queued' | 'running') =>
      input.host === null
        ? store.openUntakenBuild(input.repoFullName, state)
        : store.openBuild(input.repoFullName, state);
    const queued = await open('queued');
    if (queued) return queued;
    const running = await open('running');
    if (running && input.trigger.kind !== 'push' && input.trigger.kind !== 'command') return running;
    const created = await store.createBuild(input);
    this.#deps.audit.append(created.id, 'build.created', {
      repository: created.repoFullName,
      trigger: created.trigger,
      ...(created.host !== null ? { host: created.host } : {}),
      environment: created.config.environment ?? null,
      limits: created.config.limits,
      egress: created.config.egress.allow,
    });
    return created;
  }
}
