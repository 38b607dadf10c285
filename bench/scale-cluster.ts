// Failover and pick-up for bench/scale.ts: control planes and workers in this process on
// PostgreSQL (test/helpers/cluster.ts: the GitHub emulator, and the runner double in place of
// VMs), with the product's own polling intervals, lease sweep and heartbeat.
import { isTerminal, type TaskState } from '../src/tasks/task.ts';
import { type Cluster, startCluster } from '../test/helpers/cluster.ts';
import type { PostgresCluster } from '../test/helpers/postgres-cluster.ts';
import { waitFor } from '../test/helpers/wait-for.ts';
import { median, quantile, round } from './stats.ts';

/** How long any one step may take before the bench gives up, in ms. */
const STEP_TIMEOUT_MS = 60_000;

/**
 * In each round: a control plane and a worker on a fresh database, a task held running on the
 * worker; the worker is cut off from the database (its store closed) and the time until the task
 * is failed as interrupted is read from its finished_at.
 */
export async function measureFailover(cluster: PostgresCluster, rounds: number) {
  const results: Array<{ failover_s: number; lease_left_at_cut_s: number; after_lease_end_s: number }> = [];
  let leaseSeconds = 0;
  for (let i = 0; i < rounds; i++) {
    const c = await startCluster({
      workers: ['w1'],
      databaseUrl: await cluster.createDatabase(),
      pollMs: null,
    });
    try {
      const control = c.controls[0]!;
      const w1 = c.workers[0]!;
      leaseSeconds = control.settings.cluster.leaseSeconds;
      w1.runner.hold = () => true;
      const task = await taskOf(c, await c.labelIssue(`Work on a host about to be lost ${i + 1}`));
      await waitFor(() => w1.runner.started.includes(task.id), STEP_TIMEOUT_MS, 'the task running on w1');
      // The worker's host loses the database: once its pool has closed, nothing it does reaches it.
      await w1.airlock.store.close();
      const cutAt = Date.now();
      const leased = await control.store.db
        .selectFrom('tasks')
        .select('lease_expires_at')
        .where('id', '=', task.id)
        .executeTakeFirstOrThrow();
      const ended = await waitFor(
        async () => {
          const now = await control.tasks.get(task.id);
          return now.state === 'failed' ? now : undefined;
        },
        STEP_TIMEOUT_MS,
        'the task recovered as interrupted',
      );
      if (!ended.reason?.startsWith('interrupted') || !ended.finishedAt)
        throw new Error(`task ${task.id} ended otherwise than interrupted: ${ended.reason}`);
      const finishedAt = Date.parse(ended.finishedAt);
      const leaseEnd = Date.parse(leased.lease_expires_at!);
      results.push({
        failover_s: round((finishedAt - cutAt) / 1000, 3),
        lease_left_at_cut_s: round((leaseEnd - cutAt) / 1000, 3),
        after_lease_end_s: round((finishedAt - leaseEnd) / 1000, 3),
      });
      process.stderr.write(`failover round ${i + 1}: ${JSON.stringify(results.at(-1))}\n`);
    } finally {
      await c.close();
    }
  }
  const seconds = results.map((r) => r.failover_s);
  return {
    median: round(median(seconds), 3),
    p95: round(quantile(seconds, 0.95), 3),
    leaseSeconds,
    detail: { workers: 1, sweep_interval_s: 1, rounds: results },
  };
}

/**
 * A control plane and `workers` idle workers on one database; `tasks` issues labelled one after
 * another, each once the one before has ended (so a worker slot and the repository's limit are
 * free: the task is runnable as soon as intake has queued it). The time from its queuing
 * (created_at, written by intake) to its claim (started_at, written by the claim).
 */
export async function measurePickup(cluster: PostgresCluster, shape: { tasks: number; workers: number }) {
  const names = Array.from({ length: shape.workers }, (_, i) => `w${i + 1}`);
  const c = await startCluster({ workers: names, databaseUrl: await cluster.createDatabase(), pollMs: null });
  const waits: number[] = [];
  let warmup = 0;
  const db = c.controls[0]!.store.db;
  try {
    // One task first that is not counted: the processes' first claim, first notification and
    // first intake run code paths for the first time (its wait is kept in the detail).
    for (let i = 0; i <= shape.tasks; i++) {
      const issue = await c.labelIssue(`Pick me up ${i + 1}`);
      // The figure comes from the row's own times; the bench looks at it only every 50 ms, with one
      // small query, so as to add little load to the processes it measures (all in this one).
      const ended = await waitFor(
        async () => {
          const row = await db
            .selectFrom('tasks')
            .select(['id', 'state', 'reason', 'created_at', 'started_at'])
            .where('issue_number', '=', issue)
            .executeTakeFirst();
          return row && isTerminal(row.state as TaskState) ? row : undefined;
        },
        STEP_TIMEOUT_MS,
        `the task of #${issue} to end`,
        50,
      );
      if (ended.state !== 'succeeded' || !ended.started_at)
        throw new Error(`task ${ended.id} ended ${ended.state}: ${ended.reason}`);
      const wait = Date.parse(ended.started_at) - Date.parse(ended.created_at);
      if (i === 0) warmup = wait;
      else waits.push(wait);
    }
  } finally {
    await c.close();
  }
  const byWorker = new Map<string, number>();
  for (const w of c.workers) byWorker.set(w.name, w.runner.started.length);
  return {
    p50: round(quantile(waits, 0.5)),
    p95: round(quantile(waits, 0.95)),
    detail: {
      workers: shape.workers,
      tasks: shape.tasks,
      claimed_by: Object.fromEntries(byWorker),
      warmup_wait_ms: warmup,
      waits_ms: waits,
    },
  };
}

async function taskOf(c: Cluster, issue: number) {
  return waitFor(
    async () => (await c.controls[0]!.tasks.list()).find((t) => t.issueNumber === issue),
    STEP_TIMEOUT_MS,
    `the task of #${issue}`,
  );
}
