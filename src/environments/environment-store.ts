import { z } from 'zod';
import type { Clock } from '../clock.ts';
import { RepoConfig } from '../config/repo-config.ts';
import type { Store } from '../store/database.ts';
import { newTaskId } from '../tasks/task-store.ts';
import { BuildLog } from './build-log.ts';
import { WorkspaceRefs } from './workspace-refs.ts';

/** Why a build was asked for, and by whom (shown in the UI, recorded in the build's chain). */
export const BuildTrigger = z
  .object({
    kind: z.enum(['task', 'push', 'command', 'stale', 'local']),
    by: z.string(),
    taskId: z.string().optional(),
    /** The issue or pull request a failure is reported on. */
    issueNumber: z.number().int().optional(),
    url: z.string().optional(),
    /** For `stale`: what made the environment stale (its age, a changed config, another image). */
    detail: z.string().optional(),
    /** For `push`: the pushed head of the default branch, where a failure is reported. */
    commitSha: z.string().optional(),
  })
  .strict();
export type BuildTrigger = z.infer<typeof BuildTrigger>;

export const BuildState = z.enum(['queued', 'running', 'succeeded', 'failed']);
export type BuildState = z.infer<typeof BuildState>;

/** An environment build as read back from the database. */
export const EnvironmentBuild = z.object({
  id: z.string(),
  repoFullName: z.string(),
  repoId: z.number().nullable(),
  installationId: z.number().nullable(),
  state: BuildState,
  reason: z.string().nullable(),
  trigger: BuildTrigger,
  config: RepoConfig,
  commitSha: z.string().nullable(),
  envKey: z.string().nullable(),
  environmentId: z.string().nullable(),
  logTail: z.string().nullable(),
  createdAt: z.string(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
  /** The worker that runs or ran it (AIRLOCK_WORKER_NAME); null on one host, or while no worker took it. */
  host: z.string().nullable(),
});
export type EnvironmentBuild = z.infer<typeof EnvironmentBuild>;

/** A built environment as read back from the database. */
export const EnvironmentRecord = z.object({
  id: z.string(),
  repoFullName: z.string(),
  buildId: z.string(),
  specHash: z.string(),
  envKey: z.string(),
  commitSha: z.string(),
  dir: z.string(),
  sizeBytes: z.number(),
  state: z.enum(['ready', 'collected']),
  createdAt: z.string(),
  lastUsedAt: z.string(),
  collectedAt: z.string().nullable(),
  collectedWhy: z.string().nullable(),
  /** The workspace's refs as cloned; null for environments built before they were recorded. */
  workspaceRefs: WorkspaceRefs.nullable(),
  /** The worker whose data directory holds it; null on one host. */
  host: z.string().nullable(),
});
export type EnvironmentRecord = z.infer<typeof EnvironmentRecord>;

/** What it takes to queue a build. */
export interface NewBuild {
  repoFullName: string;
  repoId: number | null;
  installationId: number | null;
  trigger: BuildTrigger;
  config: RepoConfig;
  /**
   * The worker that must run it (its environment is stale there); null: any worker may. Defaults
   * to this store's host.
   */
  host?: string | null;
}

/** Build ids share the audit table with task ids: the prefix keeps the two apart. */
export const BUILD_ID_PREFIX = 'build-';

const BUILD_COLUMNS = [
  'id',
  'repo_full_name',
  'repo_id',
  'installation_id',
  'state',
  'reason',
  'trigger_json',
  'config_json',
  'commit_sha',
  'env_key',
  'environment_id',
  'log_tail',
  'created_at',
  'started_at',
  'finished_at',
  'host',
] as const;
const ENV_COLUMNS = [
  'id',
  'repo_full_name',
  'build_id',
  'spec_hash',
  'env_key',
  'commit_sha',
  'dir',
  'size_bytes',
  'state',
  'created_at',
  'last_used_at',
  'collected_at',
  'collected_why',
  'workspace_refs',
  'host',
] as const;

/**
 * Durable storage of environment builds and the environments they made, on either database.
 *
 * Environments are per host: a snapshot restores only on the host that froze it. A store is opened
 * for one `host` (a worker's AIRLOCK_WORKER_NAME) and then sees, as its own, only that host's
 * environments and builds, plus builds no worker has taken yet; opened for no host (airlock on one
 * host, or a reader such as the web UI) it sees every row.
 */
export class EnvironmentStore {
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #host: string | null;

  constructor(store: Store, clock: Clock, options: { host?: string | null } = {}) {
    this.#store = store;
    this.#clock = clock;
    this.#host = options.host ?? null;
  }

  /** The host whose rows this store works on; null: every row (one host). */
  get host(): string | null {
    return this.#host;
  }

  /** The same database, seen as `host`'s. */
  forHost(host: string | null): EnvironmentStore {
    return host === this.#host ? this : new EnvironmentStore(this.#store, this.#clock, { host });
  }

  /** Opens a build's log for writing (see BuildLog). */
  openLog(buildId: string): Promise<BuildLog> {
    return BuildLog.open(this.#store, buildId);
  }

  /** A build's log, as far as it was written, wherever the build runs. */
  readLog(buildId: string): Promise<string> {
    return BuildLog.read(this.#store, buildId);
  }

  /**
   * Runs `fn` in one transaction of the database (Store.transaction): every store's queries in it
   * join it.
   */
  transaction<T>(fn: () => Promise<T>): Promise<T> {
    return this.#store.transaction(fn);
  }

  /** Inserts a queued build and returns it. */
  async createBuild(input: NewBuild): Promise<EnvironmentBuild> {
    const row = await this.#store.db
      .insertInto('environment_builds')
      .values({
        id: `${BUILD_ID_PREFIX}${newTaskId()}`,
        repo_full_name: input.repoFullName,
        repo_id: input.repoId,
        installation_id: input.installationId,
        state: 'queued',
        trigger_json: JSON.stringify(input.trigger),
        config_json: JSON.stringify(input.config),
        created_at: this.#now(),
        host: input.host === undefined ? this.#host : input.host,
      })
      .returning(BUILD_COLUMNS)
      .executeTakeFirstOrThrow();
    return buildFromRow(row);
  }

  async build(id: string): Promise<EnvironmentBuild> {
    const build = await this.findBuild(id);
    if (!build) throw new Error(`no environment build ${id}`);
    return build;
  }

  async findBuild(id: string): Promise<EnvironmentBuild | undefined> {
    const row = await this.#builds().where('id', '=', id).executeTakeFirst();
    return row ? buildFromRow(row) : undefined;
  }

  /**
   * This host's builds in a state, oldest first; queued ones include those no worker has taken
   * (any host may run them).
   */
  async buildsIn(state: BuildState, limit = 100): Promise<EnvironmentBuild[]> {
    const rows = await this.#ownBuilds(state === 'queued')
      .where('state', '=', state)
      .orderBy('created_at')
      .orderBy('id')
      .limit(limit)
      .execute();
    return rows.map(buildFromRow);
  }

  /**
   * A repository's oldest queued or running build (or one in `state`) on this host, if any (opened
   * for no host: on any host, or not taken yet).
   */
  async openBuild(repoFullName: string, state?: 'queued' | 'running'): Promise<EnvironmentBuild | undefined> {
    const row = await this.#ownBuilds(false)
      .where('repo_full_name', '=', repoFullName)
      .where('state', 'in', state ? [state] : ['queued', 'running'])
      .orderBy('created_at')
      .limit(1)
      .executeTakeFirst();
    return row ? buildFromRow(row) : undefined;
  }

  /** A repository's oldest queued or running build that no host has taken (one any worker may run). */
  async openUntakenBuild(
    repoFullName: string,
    state: 'queued' | 'running',
  ): Promise<EnvironmentBuild | undefined> {
    const row = await this.#builds()
      .where('host', 'is', null)
      .where('repo_full_name', '=', repoFullName)
      .where('state', '=', state)
      .orderBy('created_at')
      .limit(1)
      .executeTakeFirst();
    return row ? buildFromRow(row) : undefined;
  }

  /** A repository's latest finished build on this host. */
  async lastFinishedBuild(repoFullName: string): Promise<EnvironmentBuild | undefined> {
    const row = await this.#ownBuilds(false)
      .where('repo_full_name', '=', repoFullName)
      .where('state', 'in', ['succeeded', 'failed'])
      .orderBy('finished_at', 'desc')
      .orderBy('id', 'desc')
      .limit(1)
      .executeTakeFirst();
    return row ? buildFromRow(row) : undefined;
  }

  /** Builds newest first, optionally of one repository. */
  async listBuilds(options: { repoFullName?: string; limit?: number } = {}): Promise<EnvironmentBuild[]> {
    let query = this.#builds();
    if (options.repoFullName) query = query.where('repo_full_name', '=', options.repoFullName);
    const rows = await query
      .orderBy('created_at', 'desc')
      .orderBy('id', 'desc')
      .limit(options.limit ?? 100)
      .execute();
    return rows.map(buildFromRow);
  }

  /**
   * Moves a queued build to running on this host; undefined when it is no longer queued (exactly
   * one host takes a build any host may run).
   */
  async startBuild(id: string): Promise<EnvironmentBuild | undefined> {
    const now = this.#now();
    let query = this.#store.db
      .updateTable('environment_builds')
      .set({ state: 'running', started_at: now, heartbeat_at: now, host: this.#host })
      .where('id', '=', id)
      .where('state', '=', 'queued');
    if (this.#host !== null)
      query = query.where((eb) => eb.or([eb('host', '=', this.#host), eb('host', 'is', null)]));
    const row = await query.returning(BUILD_COLUMNS).executeTakeFirst();
    return row ? buildFromRow(row) : undefined;
  }

  /** Notes that this host is still running a build (see staleRunning). */
  async heartbeat(id: string): Promise<void> {
    await this.#store.db
      .updateTable('environment_builds')
      .set({ heartbeat_at: this.#now() })
      .where('id', '=', id)
      .where('state', '=', 'running')
      .execute();
  }

  /** Running builds on any host whose host has not renewed them since `before` (ISO time). */
  async staleRunning(before: string): Promise<EnvironmentBuild[]> {
    const rows = await this.#builds()
      .where('state', '=', 'running')
      .where((eb) => eb.or([eb('heartbeat_at', '<', before), eb('heartbeat_at', 'is', null)]))
      .orderBy('created_at')
      .execute();
    return rows.map(buildFromRow);
  }

  /** Queued builds, on any host, bound to a named host (not those any worker may take). */
  async queuedOnNamedHosts(): Promise<EnvironmentBuild[]> {
    const rows = await this.#builds()
      .where('state', '=', 'queued')
      .where('host', 'is not', null)
      .orderBy('created_at')
      .execute();
    return rows.map(buildFromRow);
  }

  /**
   * The hosts that hold a ready environment of the repository, or run or wait for one of its
   * builds: where a push or `/airlock rebuild` must rebuild it. Null stands for "any host".
   */
  async hostsOf(repoFullName: string): Promise<Array<string | null>> {
    const made = await this.#store.db
      .selectFrom('environments')
      .select('host')
      .distinct()
      .where('repo_full_name', '=', repoFullName)
      .where('state', '=', 'ready')
      .execute();
    const building = await this.#store.db
      .selectFrom('environment_builds')
      .select('host')
      .distinct()
      .where('repo_full_name', '=', repoFullName)
      .where('state', 'in', ['queued', 'running'])
      .execute();
    return [...new Set([...made, ...building].map((r) => r.host))];
  }

  /** Records what a running build learnt about its source (the commit and the key). */
  async noteSource(id: string, source: { commitSha: string; envKey: string }): Promise<void> {
    await this.#store.db
      .updateTable('environment_builds')
      .set({ commit_sha: source.commitSha, env_key: source.envKey })
      .where('id', '=', id)
      .execute();
  }

  /**
   * Ends a build that failed (or was interrupted) with its reason and the end of its log; returns
   * it, or undefined when it had ended already (another process failed it first).
   */
  async failBuild(id: string, reason: string, logTail: string): Promise<EnvironmentBuild | undefined> {
    const row = await this.#store.db
      .updateTable('environment_builds')
      .set({ state: 'failed', reason, log_tail: logTail, finished_at: this.#now() })
      .where('id', '=', id)
      .where('state', 'in', ['queued', 'running'])
      .returning(BUILD_COLUMNS)
      .executeTakeFirst();
    return row ? buildFromRow(row) : undefined;
  }

  /**
   * Ends a build that succeeded and records the environment it made, in one transaction: an
   * environment row exists only for a snapshot that was completely made.
   */
  async succeedBuild(
    id: string,
    env: {
      id: string;
      dir: string;
      sizeBytes: number;
      commitSha: string;
      specHash: string;
      envKey: string;
      workspaceRefs?: WorkspaceRefs;
    },
    logTail: string,
  ): Promise<EnvironmentRecord> {
    return this.#store.transaction(async () => {
      const build = await this.build(id);
      const now = this.#now();
      await this.#store.db
        .insertInto('environments')
        .values({
          id: env.id,
          repo_full_name: build.repoFullName,
          build_id: id,
          spec_hash: env.specHash,
          env_key: env.envKey,
          commit_sha: env.commitSha,
          dir: env.dir,
          size_bytes: env.sizeBytes,
          state: 'ready',
          created_at: now,
          last_used_at: now,
          workspace_refs: env.workspaceRefs ? JSON.stringify(env.workspaceRefs) : null,
          host: this.#host,
        })
        .execute();
      await this.#store.db
        .updateTable('environment_builds')
        .set({
          state: 'succeeded',
          reason: `environment ${env.id} ready`,
          environment_id: env.id,
          commit_sha: env.commitSha,
          env_key: env.envKey,
          log_tail: logTail,
          finished_at: now,
        })
        .where('id', '=', id)
        .execute();
      return this.environment(env.id);
    });
  }

  async environment(id: string): Promise<EnvironmentRecord> {
    const row = await this.#environments().where('id', '=', id).executeTakeFirst();
    if (!row) throw new Error(`no environment ${id}`);
    return envFromRow(row);
  }

  /** A repository's newest ready environment on this host: the one that serves its tasks here. */
  async current(repoFullName: string): Promise<EnvironmentRecord | undefined> {
    const row = await this.#ownEnvironments()
      .where('repo_full_name', '=', repoFullName)
      .where('state', '=', 'ready')
      .orderBy('created_at', 'desc')
      .orderBy('seq', 'desc')
      .limit(1)
      .executeTakeFirst();
    return row ? envFromRow(row) : undefined;
  }

  /** Every environment whose files are still on this host's disk. */
  async ready(): Promise<EnvironmentRecord[]> {
    const rows = await this.#ownEnvironments()
      .where('state', '=', 'ready')
      .orderBy('created_at')
      .orderBy('seq')
      .execute();
    return rows.map(envFromRow);
  }

  /** Environments newest first, optionally of one repository. */
  async listEnvironments(
    options: { repoFullName?: string; limit?: number } = {},
  ): Promise<EnvironmentRecord[]> {
    let query = this.#environments();
    if (options.repoFullName) query = query.where('repo_full_name', '=', options.repoFullName);
    const rows = await query
      .orderBy('created_at', 'desc')
      .orderBy('seq', 'desc')
      .limit(options.limit ?? 100)
      .execute();
    return rows.map(envFromRow);
  }

  /** Notes that a task was started from an environment (for garbage collection by age). */
  async touch(id: string): Promise<void> {
    await this.#store.db
      .updateTable('environments')
      .set({ last_used_at: this.#now() })
      .where('id', '=', id)
      .execute();
  }

  /** Marks an environment's files as deleted, with why. */
  async markCollected(id: string, why: string): Promise<void> {
    await this.#store.db
      .updateTable('environments')
      .set({ state: 'collected', collected_at: this.#now(), collected_why: why })
      .where('id', '=', id)
      .where('state', '=', 'ready')
      .execute();
  }

  #builds() {
    return this.#store.db.selectFrom('environment_builds').select(BUILD_COLUMNS);
  }

  /** This host's builds; with `untaken`, also those no host has taken yet. */
  #ownBuilds(untaken: boolean) {
    const host = this.#host;
    if (host === null) return this.#builds();
    return this.#builds().where((eb) =>
      untaken ? eb.or([eb('host', '=', host), eb('host', 'is', null)]) : eb('host', '=', host),
    );
  }

  #environments() {
    return this.#store.db.selectFrom('environments').select(ENV_COLUMNS);
  }

  #ownEnvironments() {
    return this.#host === null ? this.#environments() : this.#environments().where('host', '=', this.#host);
  }

  #now(): string {
    return this.#clock.now().toISOString();
  }
}

function buildFromRow(row: unknown): EnvironmentBuild {
  const r = row as Record<string, unknown>;
  return EnvironmentBuild.parse({
    id: r.id,
    repoFullName: r.repo_full_name,
    repoId: r.repo_id,
    installationId: r.installation_id,
    state: r.state,
    reason: r.reason,
    trigger: JSON.parse(String(r.trigger_json)),
    config: JSON.parse(String(r.config_json)),
    commitSha: r.commit_sha,
    envKey: r.env_key,
    environmentId: r.environment_id,
    logTail: r.log_tail,
    createdAt: r.created_at,
    startedAt: r.started_at,
    finishedAt: r.finished_at,
    host: r.host,
  });
}

function envFromRow(row: unknown): EnvironmentRecord {
  const r = row as Record<string, unknown>;
  return EnvironmentRecord.parse({
    id: r.id,
    repoFullName: r.repo_full_name,
    buildId: r.build_id,
    specHash: r.spec_hash,
    envKey: r.env_key,
    commitSha: r.commit_sha,
    dir: r.dir,
    sizeBytes: r.size_bytes,
    state: r.state,
    createdAt: r.created_at,
    lastUsedAt: r.last_used_at,
    collectedAt: r.collected_at,
    collectedWhy: r.collected_why,
    workspaceRefs: r.workspace_refs === null ? null : JSON.parse(String(r.workspace_refs)),
    host: r.host,
  });
}
