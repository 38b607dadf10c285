// npm run bench -- scale [--ack-pairs N] [--deliveries N] [--concurrency N] [--claim-rounds N]
//   [--tasks N] [--claimers N] [--repos N] [--pickups N] [--pickup-workers N] [--failovers N]
// airlock on several processes sharing PostgreSQL (issue 16), measured in one run against a
// throwaway PostgreSQL cluster it starts (Debian's binaries; fsync off) and removes after:
//
// 1. Webhook acks: bench/webhooks.ts run in pairs, once with airlock on its own SQLite and once
//    as a control plane (AIRLOCK_ROLE=control) on a fresh PostgreSQL database, the order
//    alternating between pairs. The ratio is taken within each pair (the machine is shared: load
//    moves between pairs more than within one).
// 2. Claims (bench/scale-claims.ts): queued tasks written straight into a fresh database, then
//    claimers (TaskLeases, each on its own Store and connection pool) claim them until the queue
//    is empty. They run no task: no VM, no runner. Every task must be claimed exactly once, or the
//    bench fails.
// 3. Pick-up and failover (bench/scale-cluster.ts): a control plane and workers in this process,
//    with the runner double in place of VMs: the time from intake queuing a task to a worker's
//    claim; and a worker cut off from the database with a task running, until that task is failed
//    as interrupted.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { type PostgresCluster, startPostgresCluster } from '../test/helpers/postgres-cluster.ts';
import { EMPTY_CLAIM_PAUSE_MS, measureClaims } from './scale-claims.ts';
import { measureFailover, measurePickup } from './scale-cluster.ts';
import { median, round, writeResults } from './stats.ts';

const { values } = parseArgs({
  options: {
    'ack-pairs': { type: 'string', default: '3' },
    deliveries: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '50' },
    'claim-rounds': { type: 'string', default: '3' },
    tasks: { type: 'string', default: '2000' },
    claimers: { type: 'string', default: '16' },
    repos: { type: 'string', default: '50' },
    pickups: { type: 'string', default: '50' },
    'pickup-workers': { type: 'string', default: '4' },
    failovers: { type: 'string', default: '5' },
  },
});
const count = (name: keyof typeof values): number => {
  const n = Number(values[name]);
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`--${name} must be a whole number ≥ 1, not ${values[name]}`);
  return n;
};
const shape = {
  ackPairs: count('ack-pairs'),
  deliveries: count('deliveries'),
  concurrency: count('concurrency'),
  claims: {
    rounds: count('claim-rounds'),
    tasks: count('tasks'),
    claimers: count('claimers'),
    repos: count('repos'),
  },
  pickup: { tasks: count('pickups'), workers: count('pickup-workers') },
  failovers: count('failovers'),
};

const postgres = await startPostgresCluster();
try {
  const acks = await measureAcks(postgres);
  const claims = await measureClaims(postgres, shape.claims);
  const pickup = await measurePickup(postgres, shape.pickup);
  const failover = await measureFailover(postgres, shape.failovers);
  writeResults('scale', {
    ack_p50_ms: { sqlite: acks.sqlite.p50, postgres: acks.postgres.p50 },
    ack_p99_ms: { sqlite: acks.sqlite.p99, postgres: acks.postgres.p99 },
    ack_p99_ratio_pg_sqlite: acks.ratio,
    claim_p50_ms: pickup.p50,
    claim_p95_ms: pickup.p95,
    claims_per_s: claims.perSecond,
    claim_call_p50_ms: claims.p50,
    claim_call_p95_ms: claims.p95,
    double_claims: claims.doubleClaims,
    failover_s: failover.median,
    failover_p95_s: failover.p95,
    lease_timeout_s: failover.leaseSeconds,
    failover_over_lease: round(failover.median / failover.leaseSeconds),
    targets: {
      ack_p99_ratio_pg_sqlite: '<= 1.5',
      claim_p50_ms: '< 20 (a task queued by intake to a worker’s claim of it, four workers)',
      double_claims: '== 0',
      failover_s: `< lease_timeout_s + 2 = ${failover.leaseSeconds + 2}`,
    },
    acks: { deliveries: shape.deliveries, concurrency: shape.concurrency, pairs: acks.pairs },
    claims: claims.detail,
    pickup: pickup.detail,
    failover: failover.detail,
    note:
      'One run, on a shared machine: compare figures within it, not with other runs. Headline figures ' +
      'are medians over rounds; failover_p95_s is the p95 (nearest rank) over rounds. acks: ' +
      'bench/webhooks.ts in pairs (SQLite: airlock in one process; PostgreSQL: a control plane, ' +
      'AIRLOCK_ROLE=control, queuing tasks for workers), the order alternating; ack_p99_ratio_pg_sqlite ' +
      'is the median of the pairs’ ratios. claim_p50_ms and claim_p95_ms: pickup, below. claims: ' +
      'claims_per_s with 16 claimers competing; claim_call_p50_ms and claim_call_p95_ms are the latency of one ' +
      'TaskLeases.claim call that took at least one task; the claimers skip the VM and run nothing ' +
      '(claimed tasks stay starting); each has its own Store and connection pool, all in this one ' +
      `process; a claim that found nothing waits ${EMPTY_CLAIM_PAUSE_MS} ms and tries again until the ` +
      'queue is empty. pickup: workers in this process with the runner double in place of VMs and the ' +
      'product’s polling intervals; one task at a time, from created_at (written by intake inside its ' +
      'transaction, so before the task is visible: the rest of that transaction counts) to started_at ' +
      '(written by the claim). failover: a control plane and a worker in this process; from the moment the worker’s ' +
      'store had closed (its last lease renewal landed before) to the task’s finished_at, written when ' +
      'the control plane’s lease sweep (every 1 s) recovered it.',
  });
  if (claims.doubleClaims > 0) {
    process.stderr.write(`${claims.doubleClaims} tasks were claimed more than once, or not at all\n`);
    process.exitCode = 1;
  }
} finally {
  await postgres.stop();
}

type Database = 'sqlite' | 'postgres';
interface AckRound {
  database: Database;
  ack_p50_ms: number;
  ack_p99_ms: number;
  deliveries_per_s: number;
  non_200: number;
}

/** Webhook acks on SQLite and on PostgreSQL, in pairs: bench/webhooks.ts in a process of its own. */
async function measureAcks(cluster: PostgresCluster) {
  const pairs: Array<Record<Database, AckRound> & { p99_ratio: number }> = [];
  for (let i = 0; i < shape.ackPairs; i++) {
    const order: Database[] = i % 2 === 0 ? ['sqlite', 'postgres'] : ['postgres', 'sqlite'];
    const got: Partial<Record<Database, AckRound>> = {};
    for (const database of order)
      got[database] = await webhookRound(
        database === 'postgres' ? await cluster.createDatabase() : undefined,
      );
    const pair = { sqlite: got.sqlite!, postgres: got.postgres! };
    pairs.push({ ...pair, p99_ratio: round(pair.postgres.ack_p99_ms / pair.sqlite.ack_p99_ms) });
    process.stderr.write(`acks pair ${i + 1}: ${JSON.stringify(pairs.at(-1))}\n`);
  }
  const of = (database: Database) => ({
    p50: round(median(pairs.map((p) => p[database].ack_p50_ms))),
    p99: round(median(pairs.map((p) => p[database].ack_p99_ms))),
  });
  return {
    sqlite: of('sqlite'),
    postgres: of('postgres'),
    ratio: median(pairs.map((p) => p.p99_ratio)),
    pairs,
  };
}

/** One run of bench/webhooks.ts: on its own SQLite, or as a control plane on `databaseUrl`. */
async function webhookRound(databaseUrl: string | undefined): Promise<AckRound> {
  const dir = await mkdtemp(path.join(tmpdir(), 'airlock-bench-scale-'));
  try {
    const output = path.join(dir, 'webhooks.json');
    const args = [
      fileURLToPath(new URL('./webhooks.ts', import.meta.url)),
      ...['--deliveries', String(shape.deliveries), '--concurrency', String(shape.concurrency)],
      ...['--output', output, '--acks-only'],
      ...(databaseUrl ? ['--database-url', databaseUrl] : []),
    ];
    await promisify(execFile)(process.execPath, args, { maxBuffer: 64 * 1024 * 1024 });
    const figures = JSON.parse(await readFile(output, 'utf8')) as AckRound;
    if (figures.non_200 > 0)
      throw new Error(`${figures.non_200} webhook deliveries were refused on ${figures.database}`);
    const { database, ack_p50_ms, ack_p99_ms, deliveries_per_s, non_200 } = figures;
    return { database, ack_p50_ms, ack_p99_ms, deliveries_per_s, non_200 };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
