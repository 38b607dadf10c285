import { z } from 'zod';
import type { Clock } from '../clock.ts';
import { RepoConfig } from '../config/repo-config.ts';
import type { Db } from '../store/database.ts';
import { newTaskId } from '../tasks/task-store.ts';

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

/** An environment build as read back from SQLite. */
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
});
export type EnvironmentBuild = z.infer<typeof EnvironmentBuild>;

/** A built environment as read back from SQLite. */
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
});
export type EnvironmentRecord = z.infer<typeof EnvironmentRecord>;

/** What it takes to queue a build. */
export interface NewBuild {
  repoFullName: string;
  repoId: number | null;
  installationId: number | null;
  trigger: BuildTrigger;
  config: RepoConfig;
}

/** Build ids share the audit table with task ids: the prefix keeps the two apart. */
export const BUILD_ID_PREFIX = 'build-';

const BUILD_COLUMNS = `id, repo_full_name, repo_id, installation_id, state, reason, trigger_json, config_json,
  commit_sha, env_key, environment_id, log_tail, created_at, started_at, finished_at`;
const ENV_COLUMNS = `id, repo_full_name, build_id, spec_hash, env_key, commit_sha, dir, size_bytes, state, created_at,
  last_used_at, collected_at, collected_why`;

/** Durable storage of environment builds and the environments they made. */
export class EnvironmentStore {
  readonly #db: Db;
  readonly #clock: Clock;

  constructor(db: Db, clock: Clock) {
    this.#db = db;
    this.#clock = clock;
  }

  /** Runs `fn` in one transaction. */
  transaction<T>(fn: () => T): T {
    return this.#db.transaction(fn)();
  }

  /** Inserts a queued build and returns it. */
  createBuild(input: NewBuild): EnvironmentBuild {
    const id = `${BUILD_ID_PREFIX}${newTaskId()}`;
    this.#db
      .prepare(
        `INSERT INTO environment_builds (id, repo_full_name, repo_id, installation_id, state, trigger_json,
           config_json, created_at) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?)`,
      )
      .run(
        id,
        input.repoFullName,
        input.repoId,
        input.installationId,
        JSON.stringify(input.trigger),
        JSON.stringify(input.config),
        this.#now(),
      );
    return this.build(id);
  }

  build(id: string): EnvironmentBuild {
    const build = this.findBuild(id);
    if (!build) throw new Error(`no environment build ${id}`);
    return build;
  }

  findBuild(id: string): EnvironmentBuild | undefined {
    const row = this.#db.prepare(`SELECT ${BUILD_COLUMNS} FROM environment_builds WHERE id = ?`).get(id);
    return row ? buildFromRow(row) : undefined;
  }

  /** Builds in a state, oldest first. */
  buildsIn(state: BuildState, limit = 100): EnvironmentBuild[] {
    return this.#db
      .prepare(
        `SELECT ${BUILD_COLUMNS} FROM environment_builds WHERE state = ? ORDER BY created_at, id LIMIT ?`,
      )
      .all(state, limit)
      .map(buildFromRow);
  }

  /** A repository's queued or running build, if any. */
  openBuild(repoFullName: string): EnvironmentBuild | undefined {
    const row = this.#db
      .prepare(
        `SELECT ${BUILD_COLUMNS} FROM environment_builds WHERE repo_full_name = ? AND state IN ('queued', 'running')
         ORDER BY created_at LIMIT 1`,
      )
      .get(repoFullName);
    return row ? buildFromRow(row) : undefined;
  }

  /** A repository's latest finished build. */
  lastFinishedBuild(repoFullName: string): EnvironmentBuild | undefined {
    const row = this.#db
      .prepare(
        `SELECT ${BUILD_COLUMNS} FROM environment_builds WHERE repo_full_name = ? AND state IN ('succeeded', 'failed')
         ORDER BY finished_at DESC, id DESC LIMIT 1`,
      )
      .get(repoFullName);
    return row ? buildFromRow(row) : undefined;
  }

  /** Builds newest first, optionally of one repository. */
  listBuilds(options: { repoFullName?: string; limit?: number } = {}): EnvironmentBuild[] {
    const where = options.repoFullName ? 'WHERE repo_full_name = ?' : '';
    const args: unknown[] = options.repoFullName ? [options.repoFullName] : [];
    return this.#db
      .prepare(
        `SELECT ${BUILD_COLUMNS} FROM environment_builds ${where} ORDER BY created_at DESC, id DESC LIMIT ?`,
      )
      .all(...args, options.limit ?? 100)
      .map(buildFromRow);
  }

  /** Moves a queued build to running. */
  startBuild(id: string): EnvironmentBuild {
    const changed = this.#db
      .prepare(
        `UPDATE environment_builds SET state = 'running', started_at = ? WHERE id = ? AND state = 'queued'`,
      )
      .run(this.#now(), id).changes;
    if (changed !== 1) throw new Error(`environment build ${id} is not queued`);
    return this.build(id);
  }

  /** Records what a running build learnt about its source (the commit and the key). */
  noteSource(id: string, source: { commitSha: string; envKey: string }): void {
    this.#db
      .prepare('UPDATE environment_builds SET commit_sha = ?, env_key = ? WHERE id = ?')
      .run(source.commitSha, source.envKey, id);
  }

  /** Ends a build that failed (or was interrupted) with its reason and the end of its log. */
  failBuild(id: string, reason: string, logTail: string): EnvironmentBuild {
    this.#db
      .prepare(
        `UPDATE environment_builds SET state = 'failed', reason = ?, log_tail = ?, finished_at = ?
         WHERE id = ? AND state IN ('queued', 'running')`,
      )
      .run(reason, logTail, this.#now(), id);
    return this.build(id);
  }

  /**
   * Ends a build that succeeded and records the environment it made, in one transaction: an
   * environment row exists only for a snapshot that was completely made.
   */
  succeedBuild(
    id: string,
    env: { id: string; dir: string; sizeBytes: number; commitSha: string; specHash: string; envKey: string },
    logTail: string,
  ): EnvironmentRecord {
    return this.transaction(() => {
      const build = this.build(id);
      const now = this.#now();
      this.#db
        .prepare(
          `INSERT INTO environments (id, repo_full_name, build_id, spec_hash, env_key, commit_sha, dir, size_bytes,
             state, created_at, last_used_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'ready', ?, ?)`,
        )
        .run(
          env.id,
          build.repoFullName,
          id,
          env.specHash,
          env.envKey,
          env.commitSha,
          env.dir,
          env.sizeBytes,
          now,
          now,
        );
      this.#db
        .prepare(
          `UPDATE environment_builds SET state = 'succeeded', reason = ?, environment_id = ?, commit_sha = ?,
             env_key = ?, log_tail = ?, finished_at = ? WHERE id = ?`,
        )
        .run(`environment ${env.id} ready`, env.id, env.commitSha, env.envKey, logTail, now, id);
      return this.environment(env.id);
    });
  }

  environment(id: string): EnvironmentRecord {
    const row = this.#db.prepare(`SELECT ${ENV_COLUMNS} FROM environments WHERE id = ?`).get(id);
    if (!row) throw new Error(`no environment ${id}`);
    return envFromRow(row);
  }

  /** A repository's newest ready environment: the one that serves its tasks. */
  current(repoFullName: string): EnvironmentRecord | undefined {
    const row = this.#db
      .prepare(
        `SELECT ${ENV_COLUMNS} FROM environments WHERE repo_full_name = ? AND state = 'ready'
         ORDER BY created_at DESC, rowid DESC LIMIT 1`,
      )
      .get(repoFullName);
    return row ? envFromRow(row) : undefined;
  }

  /** Every environment whose files are still on disk. */
  ready(): EnvironmentRecord[] {
    return this.#db
      .prepare(`SELECT ${ENV_COLUMNS} FROM environments WHERE state = 'ready' ORDER BY created_at, rowid`)
      .all()
      .map(envFromRow);
  }

  /** Environments newest first, optionally of one repository. */
  listEnvironments(options: { repoFullName?: string; limit?: number } = {}): EnvironmentRecord[] {
    const where = options.repoFullName ? 'WHERE repo_full_name = ?' : '';
    const args: unknown[] = options.repoFullName ? [options.repoFullName] : [];
    return this.#db
      .prepare(
        `SELECT ${ENV_COLUMNS} FROM environments ${where} ORDER BY created_at DESC, rowid DESC LIMIT ?`,
      )
      .all(...args, options.limit ?? 100)
      .map(envFromRow);
  }

  /** Notes that a task was started from an environment (for garbage collection by age). */
  touch(id: string): void {
    this.#db.prepare('UPDATE environments SET last_used_at = ? WHERE id = ?').run(this.#now(), id);
  }

  /** Marks an environment's files as deleted, with why. */
  markCollected(id: string, why: string): void {
    this.#db
      .prepare(
        `UPDATE environments SET state = 'collected', collected_at = ?, collected_why = ? WHERE id = ? AND state = 'ready'`,
      )
      .run(this.#now(), why, id);
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
  });
}
