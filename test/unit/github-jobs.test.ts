import { expect, it } from 'vitest';
import { GitHubError } from '../../src/errors.ts';
import { GitHubJobQueue } from '../../src/github/github-jobs.ts';
import { openDatabase } from '../../src/store/database.ts';
import { ManualClock } from '../helpers/manual-clock.ts';
import { memoryLogger } from '../helpers/memory-logger.ts';

const { log } = memoryLogger();

it('coalesces tracking jobs only into one not yet running, so the last state is always rendered', async () => {
  const jobs = new GitHubJobQueue(openDatabase(':memory:'), new ManualClock());
  jobs.enqueue({ kind: 'tracking', taskId: 't1' });
  jobs.enqueue({ kind: 'tracking', taskId: 't1' });
  expect(jobs.pendingCount()).toBe(1);
  const rendered: number[] = [];
  // While the first render runs, the task moves on: that change must get a render of its own.
  await jobs.drain(async () => {
    rendered.push(rendered.length);
    if (rendered.length === 1) jobs.enqueue({ kind: 'tracking', taskId: 't1' });
  }, log);
  expect(jobs.pendingCount()).toBe(1);
  await jobs.drain(async () => void rendered.push(rendered.length), log);
  expect(rendered).toEqual([0, 1]);
  expect(jobs.pendingCount()).toBe(0);
});

it('retries a failing job with growing back-off on the clock, and gives up at once when GitHub refuses it', async () => {
  const clock = new ManualClock();
  const jobs = new GitHubJobQueue(openDatabase(':memory:'), clock);
  jobs.enqueue({ kind: 'comment', installationId: 1, repo: 'a/b', issueNumber: 1, body: 'x' });
  const outage = async () => {
    throw new GitHubError('GitHub: could not comment: 502', { status: 502 });
  };
  await jobs.drain(outage, log);
  expect(jobs.dueCount()).toBe(0);
  clock.advance(1_000);
  expect(jobs.dueCount()).toBe(1);
  await jobs.drain(outage, log);
  clock.advance(1_000);
  expect(jobs.dueCount()).toBe(0);
  clock.advance(1_000);
  expect(jobs.dueCount()).toBe(1);
  await jobs.drain(async () => {
    throw new GitHubError('GitHub: could not comment: 404', { status: 404 });
  }, log);
  expect(jobs.pendingCount()).toBe(0);
});
