import { existsSync } from 'node:fs';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runProcess } from '../../src/process/run-process.ts';
import type { Store } from '../../src/store/database.ts';
import { HeldResults } from '../../src/tasks/held-results.ts';
import { TaskStore } from '../../src/tasks/task-store.ts';
import { ManualClock } from '../helpers/manual-clock.ts';
import { newTaskInput } from '../helpers/task-fixture.ts';
import { DIALECTS, openTestStore } from '../helpers/test-store.ts';

describe.each(DIALECTS)('held results on %s', (dialect) => {
  let store: Store | undefined;
  let dir: string | undefined;
  afterEach(async () => {
    await store?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
    store = undefined;
    dir = undefined;
  });

  it('records a held push once per task, and keeps the record when its files are deleted', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'airlock-held-store-'));
    store = await openTestStore(dialect);
    const clock = new ManualClock(Date.parse('2026-03-01T10:00:00.000Z'));
    const held = new HeldResults(store, clock, path.join(dir, 'data'));
    // Upstream: one commit on main.
    const repo = await upstreamWithBase(dir);
    const { upstream, base } = repo;

    const task = await new TaskStore(store, clock).create(
      newTaskInput({ repoId: null, branch: 'airlock/issue-1-held' }),
    );
    expect(await held.get(task.id)).toBeUndefined();
    await held.prepare(task, upstream, async () => 'unused-for-a-local-path');
    // The agent's push, received into the held repository instead of upstream.
    const head = await repo.commit({ 'README.md': 'hello, friend\n', 'NEW.md': 'new\n' }, 'agent');
    await repo.git('push', '--quiet', held.repoPath(task.id), `HEAD:refs/heads/${task.branch}`);

    const shown = await held.hold(task, head, []);
    expect(shown).toMatchObject({ gate: 'push', base, head, commands: [], hosts: [] });
    expect(shown.files).toEqual([
      { path: 'NEW.md', added: 1, deleted: 0 },
      { path: 'README.md', added: 1, deleted: 1 },
    ]);
    const record = await held.get(task.id);
    expect(record).toMatchObject({
      taskId: task.id,
      baseSha: base,
      headSha: head,
      repoPath: held.repoPath(task.id),
      patchTruncated: false,
      files: shown.files,
      heldAt: '2026-03-01T10:00:00.000Z',
      discardedAt: null,
    });
    expect(record?.patch).toContain('+hello, friend');

    // Held again (its push re-run): one record, the later one.
    clock.advance(1000);
    await held.hold(task, head, []);
    expect(await held.get(task.id)).toMatchObject({ heldAt: '2026-03-01T10:00:01.000Z', discardedAt: null });

    clock.advance(1000);
    expect(await held.discard(task.id)).toBe(true);
    clock.advance(1000);
    expect(await held.discard(task.id)).toBe(false);
    expect(await held.get(task.id)).toMatchObject({ headSha: head, discardedAt: '2026-03-01T10:00:02.000Z' });
    await expect(held.release(task, upstream, 'token')).rejects.toThrow(
      `task ${task.id} holds no result to push`,
    );
  });

  it('pushes an approved result from another host than the one that held it, from the bundle in the database', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'airlock-held-elsewhere-'));
    store = await openTestStore(dialect);
    const clock = new ManualClock(Date.parse('2026-03-01T10:00:00.000Z'));
    const repo = await upstreamWithBase(dir);
    // Worker 1 holds the agent's push; worker 2, with a data directory of its own, runs the approved push.
    const [one, two] = ['host-1', 'host-2'].map((h) => new HeldResults(store!, clock, path.join(dir!, h)));
    const tasks = new TaskStore(store, clock);
    const task = await tasks.create(newTaskInput({ repoId: null, branch: 'airlock/issue-1-elsewhere' }));
    await one!.prepare(task, repo.upstream, async () => 'unused-for-a-local-path');
    const head = await repo.commit({ 'NEW.md': 'new\n' }, 'agent');
    await repo.git('push', '--quiet', one!.repoPath(task.id), `HEAD:refs/heads/${task.branch}`);
    await one!.hold(task, head, []);
    // Upstream gains other work meanwhile.
    await repo.commit({ 'LATER.md': 'later\n' }, 'someone else');
    await repo.git('push', '--quiet', 'origin', 'HEAD:refs/heads/other');

    // Worker 2's machine has none of worker 1's disk.
    await rename(path.join(dir, 'host-1'), path.join(dir, 'host-1-elsewhere'));
    expect(existsSync(two!.repoPath(task.id))).toBe(false);
    expect(await two!.release(task, repo.upstream, 'token')).toBe(head);
    await rename(path.join(dir, 'host-1-elsewhere'), path.join(dir, 'host-1'));
    expect(await repo.git('--git-dir', repo.upstream, 'rev-parse', `refs/heads/${task.branch}`)).toBe(head);

    // The task ends where it was pushed; worker 1's files go when it next starts, not before.
    await tasks.transition(task.id, 'starting');
    await tasks.transition(task.id, 'failed', { reason: 'ended for the test' });
    await two!.discard(task.id);
    expect(existsSync(one!.repoPath(task.id))).toBe(true);
    expect(await one!.removeDiscarded()).toEqual([task.id]);
    expect(existsSync(one!.repoPath(task.id))).toBe(false);
  });

  it('refuses a held bundle that does not match the digest recorded when it was held', async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'airlock-held-tampered-'));
    store = await openTestStore(dialect);
    const clock = new ManualClock(Date.parse('2026-03-01T10:00:00.000Z'));
    const repo = await upstreamWithBase(dir);
    const [one, two] = ['host-1', 'host-2'].map((h) => new HeldResults(store!, clock, path.join(dir!, h)));
    const task = await new TaskStore(store, clock).create(
      newTaskInput({ repoId: null, branch: 'airlock/issue-1-t' }),
    );
    await one!.prepare(task, repo.upstream, async () => 'unused');
    const head = await repo.commit({ 'NEW.md': 'new\n' }, 'agent');
    await repo.git('push', '--quiet', one!.repoPath(task.id), `HEAD:refs/heads/${task.branch}`);
    await one!.hold(task, head, []);
    await store.db
      .updateTable('held_results')
      .set({ bundle: Buffer.from('not the bundle') })
      .execute();
    await expect(two!.release(task, repo.upstream, 'token')).rejects.toThrow('does not match the digest');
    const branch = await runProcess(
      'git',
      ['--git-dir', repo.upstream, 'rev-parse', '--verify', '--quiet', `refs/heads/${task.branch}`],
      {
        timeoutMs: 30_000,
        okExitCodes: [0, 1],
      },
    );
    expect(branch.exitCode).toBe(1);
  });
});

/** A bare upstream with one commit on main, and a clone of it to commit from. */
async function upstreamWithBase(dir: string) {
  const env = {
    HOME: dir,
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_AUTHOR_NAME: 'a',
    GIT_AUTHOR_EMAIL: 'a@example.invalid',
    GIT_COMMITTER_NAME: 'a',
    GIT_COMMITTER_EMAIL: 'a@example.invalid',
  };
  const work = path.join(dir, 'work');
  const upstream = path.join(dir, 'upstream.git');
  const git = async (...args: string[]) =>
    (
      await runProcess('git', args, { cwd: existsSync(work) ? work : dir, env, timeoutMs: 30_000 })
    ).stdout.trim();
  await git('init', '--quiet', '--bare', '-b', 'main', upstream);
  await git('clone', '--quiet', upstream, work);
  const commit = async (files: Record<string, string>, message: string) => {
    for (const [file, text] of Object.entries(files)) await writeFile(path.join(work, file), text);
    await git('add', '-A');
    await git('commit', '--quiet', '-m', message);
    return git('rev-parse', 'HEAD');
  };
  const base = await commit({ 'README.md': 'hello\n' }, 'base');
  await git('push', '--quiet', 'origin', 'HEAD:refs/heads/main');
  return { upstream, base, git, commit };
}
