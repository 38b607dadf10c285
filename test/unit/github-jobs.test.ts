import { describe, expect, it } from 'vitest';
import { GitHubError } from '../../src/errors.ts';
import { GITHUB_JOBS_CHANNEL, GitHubJobQueue } from '../../src/github/github-jobs.ts';
import { CLAIM_LEASE_MS } from '../../src/store/claim-lease.ts';
import { ManualClock } from '../helpers/manual-clock.ts';
import { memoryLogger } from '../helpers/memory-logger.ts';
import { DIALECTS, testStores } from '../helpers/test-store.ts';

const { log } = memoryLogger();

describe.each(DIALECTS)('the GitHub job queue on %s', (dialect) => {
  const open = testStores(dialect);

  it('coalesces tracking jobs only into one not yet running, so the last state is always rendered', async () => {
    const jobs = new GitHubJobQueue(await open(), new ManualClock());
    await jobs.enqueue({ kind: 'tracking', taskId: 't1' });
    await jobs.enqueue({ kind: 'tracking', taskId: 't1' });
    expect(await jobs.pendingCount()).toBe(1);
    const rendered: number[] = [];
    // While the first render runs, the task moves on: that change must get a render of its own.
    await jobs.drain(async () => {
      rendered.push(rendered.length);
      if (rendered.length === 1) await jobs.enqueue({ kind: 'tracking', taskId: 't1' });
    }, log);
    expect(await jobs.pendingCount()).toBe(1);
    await jobs.drain(async () => void rendered.push(rendered.length), log);
    expect(rendered).toEqual([0, 1]);
    expect(await jobs.pendingCount()).toBe(0);
  });

  it('ends a drain after the job in hand once its process stops, leaving the rest pending', async () => {
    const jobs = new GitHubJobQueue(await open(), new ManualClock());
    for (const body of ['one', 'two', 'three'])
      await jobs.enqueue({ kind: 'comment', installationId: 1, repo: 'a/b', issueNumber: 1, body });
    const stopping = new AbortController();
    const ran: string[] = [];
    const did = await jobs.drain(
      async (job) => {
        ran.push(job.kind === 'comment' ? job.body : job.kind);
        stopping.abort();
      },
      log,
      100,
      stopping.signal,
    );
    expect(did).toBe(1);
    expect(ran).toEqual(['one']);
    expect(await jobs.pendingCount()).toBe(2);
  });

  it('retries a failing job with growing back-off on the clock, and gives up at once when GitHub refuses it', async () => {
    const clock = new ManualClock();
    const jobs = new GitHubJobQueue(await open(), clock);
    await jobs.enqueue({ kind: 'comment', installationId: 1, repo: 'a/b', issueNumber: 1, body: 'x' });
    const outage = async () => {
      throw new GitHubError('GitHub: could not comment: 502', { status: 502 });
    };
    await jobs.drain(outage, log);
    expect(await jobs.dueCount()).toBe(0);
    clock.advance(1_000);
    expect(await jobs.dueCount()).toBe(1);
    await jobs.drain(outage, log);
    clock.advance(1_000);
    expect(await jobs.dueCount()).toBe(0);
    clock.advance(1_000);
    expect(await jobs.dueCount()).toBe(1);
    await jobs.drain(async () => {
      throw new GitHubError('GitHub: could not comment: 404', { status: 404 });
    }, log);
    expect(await jobs.pendingCount()).toBe(0);
  });

  it('runs the jobs due when a drain starts, oldest first, and tells listeners of each job queued', async () => {
    const s = await open();
    const jobs = new GitHubJobQueue(s, new ManualClock());
    let heard = 0;
    const stop = await s.listen(GITHUB_JOBS_CHANNEL, () => heard++);
    for (const body of ['one', 'two', 'three']) {
      await jobs.enqueue({ kind: 'comment', installationId: 1, repo: 'a/b', issueNumber: 1, body });
    }
    await waitUntil(() => heard === 3);
    const bodies: string[] = [];
    expect(
      await jobs.drain(async (job) => {
        if (job.kind === 'comment') bodies.push(job.body);
      }, log),
    ).toBe(3);
    expect(bodies).toEqual(['one', 'two', 'three']);
    expect(await jobs.drain(async () => {}, log)).toBe(0);
    await stop();
  });

  it('does not run a job another process holds until its lease runs out, and that one is not recorded twice', async () => {
    const clock = new ManualClock();
    const s = await open();
    const jobs = new GitHubJobQueue(s, clock);
    await jobs.enqueue({ kind: 'comment', installationId: 1, repo: 'a/b', issueNumber: 1, body: 'x' });
    // A process claims the job and stalls while running it.
    const stall = stalledJob();
    const stalledDrain = jobs.drain(stall.run, log);
    await stall.running;
    const other = new GitHubJobQueue(s, clock);
    let ran = 0;
    expect(await other.drain(async () => void ran++, log)).toBe(0);
    clock.advance(CLAIM_LEASE_MS + 1);
    expect(await other.drain(async () => void ran++, log)).toBe(1);
    expect(ran).toBe(1);
    expect(await other.pendingCount()).toBe(0);
    // The stalled process comes back: its outcome is not written over the one recorded.
    stall.fail(new GitHubError('GitHub: could not comment: 502', { status: 502 }));
    expect(await stalledDrain).toBe(1);
    const [row] = await s.db.selectFrom('github_jobs').selectAll().execute();
    expect(row).toMatchObject({ status: 'done', attempts: 2, last_error: null, claimed_by: null });
  });

  it('releases every claim (for SQLite at start, where claims found are a stopped process’s)', async () => {
    const jobs = new GitHubJobQueue(await open(), new ManualClock());
    await jobs.enqueue({ kind: 'comment', installationId: 1, repo: 'a/b', issueNumber: 1, body: 'x' });
    const stall = stalledJob();
    const stalledDrain = jobs.drain(stall.run, log);
    await stall.running;
    expect(await jobs.drain(async () => {}, log)).toBe(0);
    expect(await jobs.releaseClaims()).toBe(1);
    expect(await jobs.drain(async () => {}, log)).toBe(1);
    stall.fail(new Error('stopped'));
    await stalledDrain;
    expect(await jobs.pendingCount()).toBe(0);
  });
});

/** A job run that stalls until the test makes it fail. */
function stalledJob() {
  let started: () => void = () => {};
  let fail: (error: Error) => void = () => {};
  const running = new Promise<void>((resolve) => {
    started = resolve;
  });
  return {
    running,
    run: () =>
      new Promise<void>((_resolve, reject) => {
        fail = reject;
        started();
      }),
    fail: (error: Error) => fail(error),
  };
}

/** Polls `check` until it holds (a listener's or a claim's effect lands after a few turns). */
async function waitUntil(check: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error('condition never held');
}
