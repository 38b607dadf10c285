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
    const env = {
      HOME: dir,
      GIT_CONFIG_GLOBAL: '/dev/null',
      GIT_AUTHOR_NAME: 'a',
      GIT_AUTHOR_EMAIL: 'a@example.invalid',
      GIT_COMMITTER_NAME: 'a',
      GIT_COMMITTER_EMAIL: 'a@example.invalid',
    };
    const work = path.join(dir, 'work');
    const git = async (...args: string[]) =>
      (await runProcess('git', args, { cwd: work, env, timeoutMs: 30_000 })).stdout.trim();
    // Upstream: one commit on main.
    const upstream = path.join(dir, 'upstream.git');
    await runProcess('git', ['init', '--quiet', '--bare', '-b', 'main', upstream], {
      env,
      timeoutMs: 30_000,
    });
    await runProcess('git', ['clone', '--quiet', upstream, work], { env, timeoutMs: 30_000 });
    await writeFile(path.join(work, 'README.md'), 'hello\n');
    await git('add', '-A');
    await git('commit', '--quiet', '-m', 'base');
    await git('push', '--quiet', 'origin', 'HEAD:refs/heads/main');
    const base = await git('rev-parse', 'HEAD');

    const task = await new TaskStore(store, clock).create(
      newTaskInput({ repoId: null, branch: 'airlock/issue-1-held' }),
    );
    expect(await held.get(task.id)).toBeUndefined();
    await held.prepare(task, upstream, async () => 'unused-for-a-local-path');
    // The agent's push, received into the held repository instead of upstream.
    await writeFile(path.join(work, 'README.md'), 'hello, friend\n');
    await writeFile(path.join(work, 'NEW.md'), 'new\n');
    await git('add', '-A');
    await git('commit', '--quiet', '-m', 'agent');
    const head = await git('rev-parse', 'HEAD');
    await git('push', '--quiet', held.repoPath(task.id), `HEAD:refs/heads/${task.branch}`);

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
    const env = {
      HOME: dir,
      GIT_CONFIG_GLOBAL: '/dev/null',
      GIT_AUTHOR_NAME: 'a',
      GIT_AUTHOR_EMAIL: 'a@example.invalid',
      GIT_COMMITTER_NAME: 'a',
      GIT_COMMITTER_EMAIL: 'a@example.invalid',
    };
    const work = path.join(dir, 'work');
    const run = (args: string[], cwd = dir!) => runProcess('git', args, { cwd, env, timeoutMs: 30_000 });
    const git = async (...args: string[]) => (await run(args, work)).stdout.trim();
    const upstream = path.join(dir, 'upstream.git');
    await run(['init', '--quiet', '--bare', '-b', 'main', upstream]);
    await run(['clone', '--quiet', upstream, work]);
    await writeFile(path.join(work, 'README.md'), 'hello\n');
    await git('add', '-A');
    await git('commit', '--quiet', '-m', 'base');
    await git('push', '--quiet', 'origin', 'HEAD:refs/heads/main');

    // Worker 1 holds the agent's push; worker 2, with a data directory of its own, runs the approved push.
    const [one, two] = ['host-1', 'host-2'].map((h) => new HeldResults(store!, clock, path.join(dir!, h)));
    const tasks = new TaskStore(store, clock);
    const task = await tasks.create(newTaskInput({ repoId: null, branch: 'airlock/issue-1-elsewhere' }));
    await one!.prepare(task, upstream, async () => 'unused-for-a-local-path');
    await writeFile(path.join(work, 'NEW.md'), 'new\n');
    await git('add', '-A');
    await git('commit', '--quiet', '-m', 'agent');
    const head = await git('rev-parse', 'HEAD');
    await git('push', '--quiet', one!.repoPath(task.id), `HEAD:refs/heads/${task.branch}`);
    await one!.hold(task, head, []);
    // Upstream moved on meanwhile: the held commits still apply over the start they were made on.
    await writeFile(path.join(work, 'LATER.md'), 'later\n');
    await git('add', '-A');
    await git('commit', '--quiet', '-m', 'someone else');
    await git('push', '--quiet', 'origin', 'HEAD~0:refs/heads/other');

    // Worker 2's machine has none of worker 1's disk.
    await rename(path.join(dir, 'host-1'), path.join(dir, 'host-1-elsewhere'));
    expect(existsSync(two!.repoPath(task.id))).toBe(false);
    expect(await two!.release(task, upstream, 'token')).toBe(head);
    await rename(path.join(dir, 'host-1-elsewhere'), path.join(dir, 'host-1'));
    const pushed = await run(['--git-dir', upstream, 'rev-parse', `refs/heads/${task.branch}`]);
    expect(pushed.stdout.trim()).toBe(head);

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
    const env = {
      HOME: dir,
      GIT_CONFIG_GLOBAL: '/dev/null',
      GIT_AUTHOR_NAME: 'a',
      GIT_AUTHOR_EMAIL: 'a@x.invalid',
      GIT_COMMITTER_NAME: 'a',
      GIT_COMMITTER_EMAIL: 'a@x.invalid',
    };
    const work = path.join(dir, 'work');
    const run = (args: string[], cwd = dir!) => runProcess('git', args, { cwd, env, timeoutMs: 30_000 });
    const upstream = path.join(dir, 'upstream.git');
    await run(['init', '--quiet', '--bare', '-b', 'main', upstream]);
    await run(['clone', '--quiet', upstream, work]);
    await writeFile(path.join(work, 'README.md'), 'hello\n');
    await run(['add', '-A'], work);
    await run(['commit', '--quiet', '-m', 'base'], work);
    await run(['push', '--quiet', 'origin', 'HEAD:refs/heads/main'], work);
    const [one, two] = ['host-1', 'host-2'].map((h) => new HeldResults(store!, clock, path.join(dir!, h)));
    const task = await new TaskStore(store, clock).create(
      newTaskInput({ repoId: null, branch: 'airlock/issue-1-t' }),
    );
    await one!.prepare(task, upstream, async () => 'unused');
    await writeFile(path.join(work, 'NEW.md'), 'new\n');
    await run(['add', '-A'], work);
    await run(['commit', '--quiet', '-m', 'agent'], work);
    const head = (await run(['rev-parse', 'HEAD'], work)).stdout.trim();
    await run(['push', '--quiet', one!.repoPath(task.id), `HEAD:refs/heads/${task.branch}`], work);
    await one!.hold(task, head, []);
    await store.db
      .updateTable('held_results')
      .set({ bundle: Buffer.from('not the bundle') })
      .execute();
    await expect(two!.release(task, upstream, 'token')).rejects.toThrow('does not match the digest');
    const branch = await run([
      '--git-dir',
      upstream,
      'rev-parse',
      '--verify',
      '--quiet',
      `refs/heads/${task.branch}`,
    ]).catch((e) => e);
    expect(branch.exitCode ?? 1).not.toBe(0);
  });
});
