import type { EnvironmentRecord } from './environment-store.ts';

/** What garbage collection of environments may keep. */
export interface GcLimits {
  now: Date;
  /** A repository's current environment unused this long goes. */
  idleMs: number;
  /** Total bytes of environments on disk (AIRLOCK_ENV_DISK_GIB). */
  budgetBytes: number;
  /** Environments a running task or build holds: never collected. */
  inUse: ReadonlySet<string>;
}

/** An environment to delete and why. */
export interface Collection {
  env: EnvironmentRecord;
  why: string;
}

/**
 * Which ready environments to delete: every one superseded by a newer environment of its
 * repository; a current one unused for longer than `idleMs`; then, while the rest exceed the disk
 * budget, the least recently used. One in use is never chosen (it goes on a later pass).
 */
export function environmentsToCollect(ready: readonly EnvironmentRecord[], limits: GcLimits): Collection[] {
  const out: Collection[] = [];
  const newest = new Map<string, EnvironmentRecord>();
  for (const env of ready) {
    const seen = newest.get(env.repoFullName);
    if (!seen || env.createdAt > seen.createdAt) newest.set(env.repoFullName, env);
  }
  const kept: EnvironmentRecord[] = [];
  for (const env of ready) {
    if (limits.inUse.has(env.id)) {
      kept.push(env);
      continue;
    }
    const current = newest.get(env.repoFullName);
    if (current && current.id !== env.id) {
      out.push({ env, why: `superseded by ${current.id}` });
    } else if (limits.now.getTime() - Date.parse(env.lastUsedAt) > limits.idleMs) {
      out.push({ env, why: `unused since ${env.lastUsedAt}` });
    } else {
      kept.push(env);
    }
  }
  let total = kept.reduce((sum, env) => sum + env.sizeBytes, 0);
  const byUse = kept
    .filter((env) => !limits.inUse.has(env.id))
    .sort((a, b) => a.lastUsedAt.localeCompare(b.lastUsedAt));
  for (const env of byUse) {
    if (total <= limits.budgetBytes) break;
    out.push({ env, why: `over the disk budget of ${formatGib(limits.budgetBytes)} (least recently used)` });
    total -= env.sizeBytes;
  }
  return out;
}

function formatGib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(bytes % 2 ** 30 === 0 ? 0 : 1)} GiB`;
}
