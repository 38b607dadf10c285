import type { Clock } from '../clock.ts';
import type { ReadableRepo } from './github-oauth.ts';

/**
 * Which tasks a viewer may see. `all` is the admin token; a person sees the tasks of repositories
 * GitHub lists as readable for them: matched by repository id (so a rename, or a new repository
 * taking an old name, cannot widen access), or by name for tasks recorded without an id.
 */
export type AccessScope =
  | { all: true }
  | { all: false; repoIds: ReadonlySet<number>; repoNames: ReadonlySet<string> };

/** The admin's scope. */
export const ALL_REPOS: AccessScope = { all: true };

/** Whether a scope covers a task's repository. */
export function scopeCovers(
  scope: AccessScope,
  task: { repoId: number | null; repoFullName: string },
): boolean {
  if (scope.all) return true;
  return task.repoId !== null
    ? scope.repoIds.has(task.repoId)
    : scope.repoNames.has(task.repoFullName.toLowerCase());
}

/** How RepoAccess asks GitHub. */
export interface ReadableRepoSource {
  readableRepos(token: string, installationId: number): Promise<ReadableRepo[]>;
}

interface CacheEntry {
  at: number;
  repos: Promise<ReadableRepo[]>;
}

const MAX_ENTRIES = 10_000;

/**
 * Answers "which repositories can this person read", per installation, from GitHub, reusing each
 * answer for `ttlMs` (so a person who loses access stops seeing tasks within that time). Failed
 * look-ups are not cached, and a failure denies: nothing is shown that GitHub did not vouch for.
 */
export class RepoAccess {
  readonly #source: ReadableRepoSource;
  readonly #clock: Clock;
  readonly #ttlMs: number;
  readonly #cache = new Map<string, CacheEntry>();

  constructor(options: { source: ReadableRepoSource; clock: Clock; ttlMs: number }) {
    this.#source = options.source;
    this.#clock = options.clock;
    this.#ttlMs = options.ttlMs;
  }

  /** The scope of a signed-in person over the given installations. */
  async scope(
    viewer: { userId: number; token: string },
    installationIds: readonly number[],
  ): Promise<AccessScope> {
    const lists = await Promise.all(installationIds.map((id) => this.#readable(viewer, id)));
    const repoIds = new Set<number>();
    const repoNames = new Set<string>();
    for (const repo of lists.flat()) {
      repoIds.add(repo.id);
      repoNames.add(repo.fullName.toLowerCase());
    }
    return { all: false, repoIds, repoNames };
  }

  /** Forgets every cached answer for a person (on sign-out). */
  forget(userId: number): void {
    for (const key of this.#cache.keys()) if (key.startsWith(`${userId}:`)) this.#cache.delete(key);
  }

  #readable(viewer: { userId: number; token: string }, installationId: number): Promise<ReadableRepo[]> {
    const now = this.#clock.now().getTime();
    const key = `${viewer.userId}:${installationId}`;
    const hit = this.#cache.get(key);
    if (hit && now - hit.at < this.#ttlMs) return hit.repos;
    if (this.#cache.size >= MAX_ENTRIES) this.#prune(now);
    const repos = this.#source.readableRepos(viewer.token, installationId);
    this.#cache.set(key, { at: now, repos });
    repos.catch(() => {
      if (this.#cache.get(key)?.repos === repos) this.#cache.delete(key);
    });
    return repos;
  }

  #prune(now: number): void {
    for (const [key, entry] of this.#cache) if (now - entry.at >= this.#ttlMs) this.#cache.delete(key);
    if (this.#cache.size >= MAX_ENTRIES) this.#cache.clear();
  }
}
