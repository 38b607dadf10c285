import { afterEach, describe, expect, it } from 'vitest';
import { parseRepoConfig } from '../../src/config/repo-config.ts';
import { EnvironmentStore, type NewBuild } from '../../src/environments/environment-store.ts';
import type { Store } from '../../src/store/database.ts';
import { ManualClock } from '../helpers/manual-clock.ts';
import { DIALECTS, openTestStore } from '../helpers/test-store.ts';

const config = parseRepoConfig('environment:\n  setup: [npm ci]\n');
const build = (repoFullName = 'acme/widgets'): NewBuild => ({
  repoFullName,
  repoId: 7,
  installationId: 1,
  trigger: { kind: 'push', by: 'alice', detail: 'key files changed' },
  config,
});
const made = (id: string) => ({
  id,
  dir: `/data/environments/${id}`,
  sizeBytes: 1024,
  commitSha: 'c'.repeat(40),
  specHash: 's',
  envKey: 'k',
});

describe.each(DIALECTS)('the environment store on %s', (dialect) => {
  let store: Store | undefined;
  afterEach(async () => {
    await store?.close();
    store = undefined;
  });
  const open = async () => {
    store = await openTestStore(dialect);
    const clock = new ManualClock(Date.parse('2026-03-01T10:00:00.000Z'));
    return { clock, envs: new EnvironmentStore(store, clock) };
  };

  it('queues, starts once, and ends a build', async () => {
    const { envs, clock } = await open();
    const queued = await envs.createBuild(build());
    expect(queued).toMatchObject({
      id: expect.stringMatching(/^build-/),
      state: 'queued',
      trigger: { kind: 'push', by: 'alice' },
      config,
      createdAt: '2026-03-01T10:00:00.000Z',
    });
    expect(await envs.openBuild('acme/widgets')).toEqual(queued);
    expect((await envs.buildsIn('queued')).map((b) => b.id)).toEqual([queued.id]);
    clock.advance(1000);
    expect(await envs.startBuild(queued.id)).toMatchObject({
      state: 'running',
      startedAt: '2026-03-01T10:00:01.000Z',
    });
    // Started once: a second start (another worker's) is told it is no longer queued.
    expect(await envs.startBuild(queued.id)).toBeUndefined();
    await envs.noteSource(queued.id, { commitSha: 'c'.repeat(40), envKey: 'k' });
    const failed = await envs.failBuild(queued.id, 'setup failed', 'npm ERR!');
    expect(failed).toMatchObject({
      state: 'failed',
      reason: 'setup failed',
      logTail: 'npm ERR!',
      envKey: 'k',
    });
    // An ended build is not ended again.
    expect(await envs.failBuild(queued.id, 'interrupted', '')).toBeUndefined();
    expect(await envs.build(queued.id)).toMatchObject({ reason: 'setup failed' });
    expect(await envs.openBuild('acme/widgets')).toBeUndefined();
    expect(await envs.lastFinishedBuild('acme/widgets')).toMatchObject({ id: queued.id });
    expect(await envs.findBuild('build-nosuch')).toBeUndefined();
  });

  it('records an environment only together with its build’s success', async () => {
    const { envs } = await open();
    const first = await envs.createBuild(build());
    await envs.startBuild(first.id);
    const env = await envs.succeedBuild(first.id, made('env-one'), 'done');
    expect(env).toMatchObject({
      id: 'env-one',
      buildId: first.id,
      state: 'ready',
      repoFullName: 'acme/widgets',
    });
    expect(await envs.build(first.id)).toMatchObject({ state: 'succeeded', environmentId: 'env-one' });
    // A second environment of the same id cannot be recorded: the build stays as it was.
    const second = await envs.createBuild(build());
    await envs.startBuild(second.id);
    await expect(envs.succeedBuild(second.id, made('env-one'), 'done')).rejects.toThrow();
    expect(await envs.build(second.id)).toMatchObject({ state: 'running', environmentId: null });
  });

  it('serves the newest ready environment, the latest of one millisecond included', async () => {
    const { envs, clock } = await open();
    const ids: string[] = [];
    for (const id of ['env-a', 'env-b', 'env-c']) {
      const b = await envs.createBuild(build());
      await envs.startBuild(b.id);
      await envs.succeedBuild(b.id, made(id), '');
      ids.push(id);
    }
    const other = await envs.createBuild(build('acme/other'));
    await envs.startBuild(other.id);
    clock.advance(1000);
    await envs.succeedBuild(other.id, made('env-other'), '');
    expect((await envs.current('acme/widgets'))?.id).toBe('env-c');
    expect((await envs.ready()).map((e) => e.id)).toEqual([...ids, 'env-other']);
    expect((await envs.listEnvironments({ repoFullName: 'acme/widgets' })).map((e) => e.id)).toEqual([
      'env-c',
      'env-b',
      'env-a',
    ]);
    await envs.markCollected('env-c', 'superseded');
    expect((await envs.current('acme/widgets'))?.id).toBe('env-b');
    expect(await envs.environment('env-c')).toMatchObject({ state: 'collected', collectedWhy: 'superseded' });
    clock.advance(5000);
    await envs.touch('env-b');
    expect((await envs.environment('env-b')).lastUsedAt).toBe('2026-03-01T10:00:06.000Z');
    expect((await envs.listBuilds({ repoFullName: 'acme/other' })).map((b) => b.id)).toEqual([other.id]);
    expect(await envs.listBuilds({ limit: 2 })).toHaveLength(2);
  });
});
