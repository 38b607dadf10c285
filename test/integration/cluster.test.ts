import { afterEach, describe, expect, it } from 'vitest';
import type { Task } from '../../src/tasks/task.ts';
import { type Cluster, startCluster } from '../helpers/cluster.ts';
import { waitFor } from '../helpers/wait-for.ts';

// Control planes and workers sharing one PostgreSQL database (issue 16): webhooks arrive at a
// control plane, workers lease the tasks, and the control plane speaks to GitHub for them.
describe('airlock on several processes sharing PostgreSQL', () => {
  let cluster: Cluster | undefined;
  afterEach(async () => {
    await cluster?.close();
    cluster = undefined;
  });

  const tasksOf = async (c: Cluster): Promise<Task[]> => c.controls[0]!.tasks.list();
  const taskFor = async (c: Cluster, issue: number) =>
    waitFor(
      async () => (await tasksOf(c)).find((t) => t.issueNumber === issue),
      15_000,
      `the task of #${issue}`,
    );

  it('runs tasks on every worker with tokens the control plane mints, and opens their pull requests', async () => {
    cluster = await startCluster({ workers: ['w1', 'w2'] });
    const c = cluster;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    for (const w of c.workers) w.runner.gate = gate;
    const issues = [];
    for (let i = 1; i <= 4; i++) issues.push(await c.labelIssue(`Work ${i}`));
    // Each worker runs at most two at once: four running means both took work.
    await waitFor(
      () => c.workers.every((w) => w.runner.started.length === 2),
      20_000,
      'two tasks running on each worker',
    );
    release();
    const done = await waitFor(
      async () => {
        const all = await tasksOf(c);
        // The pull request is opened by the control plane's GitHub job queue, after the task ends.
        return all.length === 4 && all.every((t) => t.state === 'succeeded' && t.prNumber !== null)
          ? all
          : undefined;
      },
      30_000,
      'every task to succeed with its pull request',
    );
    for (const task of done) {
      expect(task.prNumber).not.toBeNull();
      const types = (await c.controls[0]!.audit.events(task.id)).map((e) => e.type);
      expect(types).toContain('task.claimed');
      const claimed = (await c.controls[0]!.audit.events(task.id)).find((e) => e.type === 'task.claimed')!;
      const minted = (await c.controls[0]!.audit.events(task.id)).find((e) => e.type === 'token.minted')!;
      expect(minted.data).toMatchObject({ repository: ['acme/widgets'], for: 'worker' });
      expect(c.workers.find((w) => w.name === claimed.data.worker)?.runner.started).toContain(task.id);
      expect((await c.controls[0]!.audit.verify(task.id)).ok).toBe(true);
    }
    expect(c.gh.state.pulls.filter((p) => p.head.ref.startsWith('airlock/'))).toHaveLength(4);
    // No worker was given the App's key.
    for (const w of c.workers) expect(w.airlock.settings.github).toBeUndefined();
  });

  it('cancels a task running on a worker when a person asks the control plane', async () => {
    cluster = await startCluster({ workers: ['w1'] });
    const c = cluster;
    c.workers[0]!.runner.hold = () => true;
    const issue = await c.labelIssue('Long work');
    const task = await taskFor(c, issue);
    await waitFor(() => c.workers[0]!.runner.started.includes(task.id), 15_000, 'the task running on w1');
    await c.comment(issue, '/airlock cancel');
    const ended = await waitFor(
      async () => {
        const now = await c.controls[0]!.tasks.get(task.id);
        return now.state === 'cancelled' ? now : undefined;
      },
      15_000,
      'the task cancelled',
    );
    expect(ended.reason).toContain('alice');
  });

  it('recovers the tasks of a worker cut off from the database, once its lease ends', async () => {
    cluster = await startCluster({ workers: ['w1'] });
    const c = cluster;
    const w1 = c.workers[0]!;
    w1.runner.hold = () => true;
    const issue = await c.labelIssue('Work on a host about to be lost');
    const task = await taskFor(c, issue);
    await waitFor(() => w1.runner.started.includes(task.id), 15_000, 'the task running on w1');
    // The worker's host loses the database: its heartbeat stops reaching it.
    await w1.airlock.store.close();
    const ended = await waitFor(
      async () => {
        const now = await c.controls[0]!.tasks.get(task.id);
        return now.state === 'failed' ? now : undefined;
      },
      20_000,
      'the task recovered as interrupted',
    );
    expect(ended.reason).toMatch(/^interrupted: its worker stopped renewing the task’s lease/);
    expect(ended.reason).toContain('/airlock retry');
    const recovered = (await c.controls[0]!.audit.events(task.id)).filter((e) => e.type === 'task.recovered');
    expect(recovered).toHaveLength(1);
    // The worker said why it took no more work.
    expect(c.logLines.some((l) => l.includes('cannot reach the database: taking no new work'))).toBe(true);
    // GitHub hears of it through the control plane: the tracking comment says how to retry.
    await waitFor(
      () =>
        c.gh.state.comments.some(
          (cm: { issueNumber: number; body: string }) =>
            cm.issueNumber === issue && cm.body.includes('/airlock retry'),
        ),
      15_000,
      'the tracking comment to tell of the interruption',
    );
  });
});
