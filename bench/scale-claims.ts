// Claims for bench/scale.ts: competing claimers emptying a queue of tasks on PostgreSQL.
import { systemClock } from '../src/clock.ts';
import { openStore, type Store } from '../src/store/database.ts';
import { TaskLeases } from '../src/workers/task-leases.ts';
import type { PostgresCluster } from '../test/helpers/postgres-cluster.ts';
import { taskRow } from '../test/helpers/task-rows.ts';
import { median, quantile, round } from './stats.ts';

/** Free slots each claimer asks for, as a worker running nothing with AIRLOCK_MAX_CONCURRENT_TASKS=4. */
export const CLAIM_FREE = 4;
/** How long a claimer that found nothing it could take waits before claiming again. */
export const EMPTY_CLAIM_PAUSE_MS = 5;

interface ClaimShape {
  rounds: number;
  tasks: number;
  claimers: number;
  repos: number;
}

/**
 * In each round, on a fresh database: `tasks` queued tasks over `repos` repositories, then
 * `claimers` TaskLeases (each on its own Store and connection pool, as worker processes have)
 * claiming until the queue is empty. The claimers run nothing: a claimed task stays `starting`.
 */
export async function measureClaims(cluster: PostgresCluster, shape: ClaimShape) {
  const rounds: ClaimRound[] = [];
  for (let i = 0; i < shape.rounds; i++) {
    rounds.push(await claimRound(await cluster.createDatabase(), shape));
    process.stderr.write(`claims round ${i + 1}: ${JSON.stringify(rounds.at(-1))}\n`);
  }
  return {
    p50: round(median(rounds.map((r) => r.claim_p50_ms))),
    p95: round(median(rounds.map((r) => r.claim_p95_ms))),
    perSecond: round(median(rounds.map((r) => r.claims_per_s)), 1),
    doubleClaims: rounds.reduce((sum, r) => sum + r.double_claims, 0),
    detail: {
      tasks: shape.tasks,
      claimers: shape.claimers,
      repositories: shape.repos,
      free_slots: CLAIM_FREE,
      max_per_repo: shape.tasks,
      rounds,
    },
  };
}

interface ClaimRound {
  claimed: number;
  claim_calls_with_tasks: number;
  empty_claims: number;
  claim_p50_ms: number;
  claim_p95_ms: number;
  claims_per_s: number;
  /** Tasks claimed more than once, claimed by nobody, or leased in the database to another claimer. */
  double_claims: number;
}

async function claimRound(databaseUrl: string, shape: ClaimShape): Promise<ClaimRound> {
  const seed = await openStore({ url: databaseUrl });
  const stores: Store[] = [seed];
  try {
    await queueTasks(seed, shape.tasks, shape.repos);
    const claimers = [];
    for (let i = 0; i < shape.claimers; i++) {
      const store = await openStore({ url: databaseUrl });
      stores.push(store);
      // Connected before the clock starts, as a running worker is.
      await store.db.selectFrom('workers').select('id').execute();
      claimers.push({
        id: `claimer-${i + 1}`,
        leases: new TaskLeases(store, systemClock, { leaseMs: 60_000 }),
      });
    }
    const latencies: number[] = [];
    const claimedBy = new Map<string, string[]>();
    let emptyClaims = 0;
    let lastClaimAt = 0;
    const started = performance.now();
    await Promise.all(
      claimers.map(async ({ id, leases }) => {
        for (;;) {
          const t0 = performance.now();
          const got = await leases.claim(id, { free: CLAIM_FREE, maxPerRepo: shape.tasks });
          const t1 = performance.now();
          if (got.length > 0) {
            latencies.push(t1 - t0);
            lastClaimAt = Math.max(lastClaimAt, t1);
            for (const task of got) claimedBy.set(task.id, [...(claimedBy.get(task.id) ?? []), id]);
            continue;
          }
          emptyClaims++;
          if ((await queued(seed)) === 0) return;
          await new Promise((resolve) => setTimeout(resolve, EMPTY_CLAIM_PAUSE_MS));
        }
      }),
    );
    // What the database holds must agree: each task starting, leased to the one claimer that got it.
    const rows = await seed.db.selectFrom('tasks').select(['id', 'state', 'lease_owner']).execute();
    const wrong = rows.filter((r) => {
      const by = claimedBy.get(r.id) ?? [];
      return by.length !== 1 || r.state !== 'starting' || r.lease_owner !== by[0];
    });
    return {
      claimed: claimedBy.size,
      claim_calls_with_tasks: latencies.length,
      empty_claims: emptyClaims,
      claim_p50_ms: round(quantile(latencies, 0.5)),
      claim_p95_ms: round(quantile(latencies, 0.95)),
      claims_per_s: round(claimedBy.size / ((lastClaimAt - started) / 1000), 1),
      double_claims: wrong.length + Math.abs(shape.tasks - rows.length),
    };
  } finally {
    for (const store of stores) await store.close();
  }
}

/** Writes `n` queued tasks over `repos` repositories, each on its own branch, oldest first. */
async function queueTasks(store: Store, n: number, repos: number): Promise<void> {
  const base = Date.parse('2026-12-01T10:00:00Z');
  const rows = Array.from({ length: n }, (_, i) =>
    taskRow({
      id: `task-${String(i).padStart(6, '0')}`,
      repo_full_name: `acme/repo-${i % repos}`,
      repo_id: (i % repos) + 1,
      issue_number: i + 1,
      branch: `airlock/issue-${i + 1}`,
      delivery_id: `delivery-${i}`,
      created_at: new Date(base + i).toISOString(),
    }),
  );
  for (let i = 0; i < rows.length; i += 500)
    await store.db
      .insertInto('tasks')
      .values(rows.slice(i, i + 500))
      .execute();
}

async function queued(store: Store): Promise<number> {
  const row = await store.db
    .selectFrom('tasks')
    .select((eb) => eb.fn.countAll<number | string>().as('n'))
    .where('state', '=', 'queued')
    .executeTakeFirstOrThrow();
  return Number(row.n);
}
