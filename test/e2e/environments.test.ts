import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type E2eWorld, startE2eWorld } from '../helpers/e2e-world.ts';
import { waitFor } from '../helpers/wait-for.ts';

// Environments on real microVMs: a Node repository whose npm-ci-like setup runs once, at build,
// into the workspace every task then restores; a key-file change rebuilds while the old
// environment serves. (A stop mid-build is covered on the control plane: the sandbox's freeze
// makes its directory atomically, and recovery removes what is not a recorded environment.)
let world: E2eWorld;

// What `npm ci` stands for: slow work keyed by the lock file, leaving files git does not track.
const SETUP = `#!/bin/bash
set -e
mkdir -p node_modules/left-pad
cp package-lock.json node_modules/.installed-from
echo "setup ran at $(cat /proc/sys/kernel/random/uuid)" >> setup-runs.log
`;
const AGENT = `#!/bin/bash
set -e
test -f node_modules/.installed-from
{ cat setup-runs.log; echo "lock: $(cat node_modules/.installed-from)"; git log -1 --format=%s; } > seen.txt
echo "done"
`;
const CONFIG = `agent: script
script: scripts/agent.sh
timeout_minutes: 20
limits:
  cpus: 1
  memory_mib: 768
  disk_mib: 1024
environment:
  setup: [bash scripts/setup.sh]
  key_files: [package-lock.json]
`;

beforeAll(async () => {
  world = await startE2eWorld({
    files: {
      '.gitignore': 'node_modules/\nsetup-runs.log\n',
      'package-lock.json': '{"lockfileVersion":3,"v":1}\n',
      'scripts/setup.sh': SETUP,
      'scripts/agent.sh': AGENT,
      '.github/airlock.yml': CONFIG,
    },
  });
}, 120_000);

afterAll(async () => {
  await world?.close();
});

const execSync = (w: E2eWorld, args: string[]) =>
  execFileSync('git', ['--git-dir', w.gh.state.repos.get('acme/widgets')!.dir, ...args], {
    encoding: 'utf8',
  });

const seen = (branch: string) =>
  execFileSync(
    'git',
    ['--git-dir', world.gh.state.repos.get('acme/widgets')!.dir, 'show', `${branch}:seen.txt`],
    {
      encoding: 'utf8',
    },
  );

it('runs setup once, at build; each task restores the workspace, gets the delta from the host mirror and starts from it', async () => {
  const first = await world.labelIssue('First', 'Report what you see.');
  expect(first.state, first.reason ?? '').toBe('succeeded');
  const store = world.airlock.environments!.store;
  const [build] = await store.listBuilds();
  expect(build).toMatchObject({ state: 'succeeded', trigger: { kind: 'task' } });
  expect(seen(first.branch).match(/setup ran at/g)).toHaveLength(1);

  const pushed = await world.pushToMain(
    { 'README.md': 'changed after the build\n' },
    'a change after the build',
  );
  await world.plane.quiesce();
  const second = await world.labelIssue('Second', 'Report what you see.');
  expect(second.state, second.reason ?? '').toBe('succeeded');
  const report = seen(second.branch);
  // The same setup run (the build's), the lock file it installed from, and the latest commit.
  expect(report.match(/setup ran at/g)).toHaveLength(1);
  expect(report.split('\n')[0]).toBe(seen(first.branch).split('\n')[0]);
  expect(report).toContain('a change after the build');
  expect(await store.listBuilds()).toHaveLength(1);

  // The host brought each workspace up to date from its mirror; the guest fetched nothing.
  const delta = async (taskId: string) =>
    (await world.audit.events(taskId)).find((e) => e.type === 'workspace.delta')?.data;
  expect(await delta(first.id)).toMatchObject({ path: 'host_mirror', pack: null });
  expect(await delta(second.id)).toMatchObject({
    path: 'host_mirror',
    start: { ref: 'refs/remotes/origin/main', sha: pushed },
    head: pushed,
    // main moved; the first task's branch is new.
    refs: { updated: 1, created: 1, pruned: 0, tags: 0 },
    pack: { objects: expect.any(Number) },
  });
  const secondEvents = await world.audit.events(second.id, { limit: 100_000 });
  expect(secondEvents.find((e) => e.type === 'workspace.mirror_fetch')?.data).toMatchObject({
    created: false,
    changed: expect.arrayContaining([expect.objectContaining({ ref: 'refs/heads/main', to: pushed })]),
  });
  // (Its proxy forwarded only the push at the end.)
  expect(secondEvents.filter((e) => e.type === 'proxy.git' && e.data.service === 'git-upload-pack')).toEqual(
    [],
  );
  expect(
    secondEvents
      .filter((e) => e.type === 'vm.exec')
      .map((e) => e.data.argv as string[])
      .filter((argv) => argv.some((arg) => ['fetch', 'index-pack', 'unpack-objects'].includes(arg))),
  ).toEqual([]);

  for (const task of [first, second]) {
    const types = (await world.audit.events(task.id)).map((e) => e.type);
    expect(types).toContain('environment.restore');
    expect(types).not.toContain('task.setup');
    const created = (await world.audit.events(task.id)).find((e) => e.type === 'vm.created')!;
    expect(created.data.environment).toBe(build!.environmentId);
  }
  const buildTypes = (await world.audit.events(build!.id)).map((e) => e.type);
  for (const type of [
    'build.created',
    'vm.created',
    'vm.exec',
    'proxy.git',
    'build.source',
    'build.setup',
    'vm.frozen',
    'build.outcome',
  ])
    expect(buildTypes, type).toContain(type);
  expect((await world.audit.verify(build!.id)).ok).toBe(true);
}, 1_200_000);

it('leaves a delta too large for the host to hand over to a fetch in the guest, and says so', async () => {
  // Random bytes do not compress: the pack is over what the host writes through the VM's channel.
  const noise = randomBytes(600 * 1024).toString('base64');
  const pushed = await world.pushToMain({ 'assets/noise.txt': noise }, 'a large change');
  await world.plane.quiesce();
  const task = await world.labelIssue('Large', 'Report what you see.');
  expect(task.state, task.reason ?? '').toBe('succeeded');
  expect(seen(task.branch)).toContain('a large change');
  const events = await world.audit.events(task.id, { limit: 100_000 });
  expect(events.find((e) => e.type === 'workspace.delta')?.data).toEqual({
    path: 'guest_fetch',
    reason: expect.stringMatching(/^the delta is \d+ KiB, over the 256 KiB handed over by the host$/),
  });
  const execs = events.filter((e) => e.type === 'vm.exec').map((e) => (e.data.argv as string[]).join(' '));
  expect(execs).toContainEqual(expect.stringMatching(/^git fetch --quiet --prune origin$/));
  expect(
    execs.some((argv) => argv.startsWith('git checkout --quiet --force -B') && argv.endsWith('origin/main')),
  ).toBe(true);
  expect(
    execSync(world, ['rev-parse', `${task.branch}~1`]).trim(),
    'the task started from the pushed commit',
  ).toBe(pushed);
}, 1_200_000);

it('rebuilds when a key file changes, while the old environment keeps serving', async () => {
  const store = world.airlock.environments!.store;
  const old = (await store.current('acme/widgets'))!;
  // The new setup takes a while, so a task arrives while it builds.
  await world.pushToMain(
    { 'package-lock.json': '{"lockfileVersion":3,"v":2}\n', 'scripts/setup.sh': `${SETUP}sleep 30\n` },
    'bump the lock file',
  );
  await waitFor(
    async () => (await store.openBuild('acme/widgets'))?.state === 'running',
    120_000,
    'the rebuild to run',
  );
  const during = await world.labelIssue('During', 'Report what you see.');
  expect(during.state, during.reason ?? '').toBe('succeeded');
  expect(seen(during.branch)).toContain('"v":1');
  expect(
    (await world.audit.events(during.id)).find((e) => e.type === 'environment.restore')?.data.environment,
  ).toBe(old.id);

  await waitFor(
    async () => (await store.current('acme/widgets'))?.id !== old.id,
    900_000,
    'the new environment',
  );
  const after = await world.labelIssue('After', 'Report what you see.');
  expect(after.state, after.reason ?? '').toBe('succeeded');
  expect(seen(after.branch)).toContain('"v":2');
  // Superseded and no longer held: its snapshot is gone from disk.
  await waitFor(
    async () => (await store.environment(old.id)).state === 'collected',
    60_000,
    'the old environment collected',
  );
  expect(await readdir(world.airlock.environments!.root)).toEqual([
    (await store.current('acme/widgets'))!.id,
  ]);
}, 1_800_000);
