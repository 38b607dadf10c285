import { watch } from 'node:fs';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { EnvironmentRecord } from '../../src/environments/environment-store.ts';
import { startAirlockProcess } from '../helpers/airlock-process.ts';
import { type E2eWorld, startE2eWorld } from '../helpers/e2e-world.ts';
import { processesNaming } from '../helpers/processes.ts';
import { emulatorEnv } from '../helpers/test-settings.ts';
import { testVmImage } from '../helpers/vm-image.ts';
import { waitFor } from '../helpers/wait-for.ts';

// Builds interrupted on real microVMs: an airlock process killed outright (SIGKILL) while its build
// freezes the environment, and an airlock stopped while its build's setup runs. Each leaves no
// half-made environment once airlock runs again (the environments directory holds only the last
// good environment, no VM of the build is left), the build is failed as interrupted, and the next
// task runs on the last good environment.
let world: E2eWorld;
let good: EnvironmentRecord;

const SETUP = `#!/bin/bash
set -e
echo "installing from $(cat package-lock.json)"
mkdir -p node_modules && cp package-lock.json node_modules/.installed-from
if [ -f hold-setup ]; then echo "setup holds"; sleep 3600; fi
`;
const AGENT = `#!/bin/bash
set -e
cp node_modules/.installed-from seen.txt
echo "done"
`;
const CONFIG = `agent: script
script: scripts/agent.sh
timeout_minutes: 30
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
      '.gitignore': 'node_modules/\n',
      'package-lock.json': '{"v":1}\n',
      'scripts/setup.sh': SETUP,
      'scripts/agent.sh': AGENT,
      '.github/airlock.yml': CONFIG,
    },
  });
  const first = await world.labelIssue('First', 'Build the environment.', { timeoutMs: 1_200_000 });
  expect(first.state, first.reason ?? '').toBe('succeeded');
  good = (await world.airlock.environments!.store.current('acme/widgets'))!;
  expect(good).toBeDefined();
}, 1_500_000);

afterAll(async () => {
  await world?.close();
});

const environmentsRoot = () => path.join(world.dataDir, 'environments');
const vmDirs = () => readdir(path.join(world.dataDir, 'vms')).catch(() => [] as string[]);

/** The next task restores the last good environment and runs. */
async function expectTaskOnGoodEnvironment(title: string): Promise<void> {
  const task = await world.labelIssue(title, 'Report what you see.', { timeoutMs: 1_200_000 });
  expect(task.state, task.reason ?? '').toBe('succeeded');
  const restored = (await world.audit.events(task.id)).find((e) => e.type === 'environment.restore');
  expect(restored?.data.environment).toBe(good.id);
}

it('a build killed outright while it freezes leaves nothing half-made: the next start fails it as interrupted, and tasks run on the last good environment', async () => {
  const image = testVmImage();
  let halfMade: string | undefined;
  await world.restart(async ({ dataDir, port }) => {
    // The same airlock as its own process, on the same data directory and port.
    const app = await startAirlockProcess(
      emulatorEnv(world.gh, dataDir, {
        PORT: String(port),
        AIRLOCK_CACHE_DIR: path.dirname(path.dirname(image.dir)),
        AIRLOCK_MAX_CONCURRENT_TASKS: '1',
        LOG_LEVEL: 'info',
      }),
      { cwd: dataDir },
    );
    try {
      // Killed the moment the freeze makes its directory: the snapshot is half-written then.
      const watcher = watch(environmentsRoot(), (_event, name) => {
        if (!halfMade && name?.includes('.partial-')) {
          app.child.kill('SIGKILL');
          halfMade = name;
        }
      });
      let ended: number | NodeJS.Signals | null | undefined;
      void app.exited.then((how) => {
        ended = how;
      });
      try {
        await world.pushToMain({ 'package-lock.json': '{"v":2}\n' }, 'bump the lock file');
        await waitFor(
          () => ended !== undefined || app.output().includes('environment build failed'),
          1_200_000,
          'the build to freeze',
        );
        expect(ended, app.output()).toBe('SIGKILL');
      } finally {
        watcher.close();
      }
    } finally {
      if (app.child.exitCode === null && app.child.signalCode === null) app.child.kill('SIGKILL');
    }
    expect(halfMade, app.output()).toMatch(/^env-.*\.partial-/);
    // What the kill left: a directory besides the good environment, and the build's VM's files.
    expect(
      (await readdir(environmentsRoot())).filter((name) => name !== path.basename(good.dir)),
    ).not.toEqual([]);
    expect(await vmDirs()).not.toEqual([]);
    // The VM died with its owner.
    await waitFor(
      () => processesNaming(world.dataDir).length === 0,
      30_000,
      'the build VM to die with airlock',
    );
  });

  const store = world.airlock.environments!.store;
  const killed = (await store.listBuilds()).find((b) => b.trigger.kind === 'push')!;
  expect(killed.state).toBe('failed');
  expect(killed.reason).toMatch(/^interrupted: airlock stopped during the build/);
  expect((await world.audit.events(killed.id)).at(-1)).toMatchObject({
    type: 'build.outcome',
    data: { state: 'failed' },
  });
  expect(await readdir(environmentsRoot())).toEqual([path.basename(good.dir)]);
  expect(await vmDirs()).toEqual([]);
  expect((await store.current('acme/widgets'))?.id).toBe(good.id);

  await expectTaskOnGoodEnvironment('After the kill');
}, 3_600_000);

it('a build stopped during its setup leaves nothing half-made, fails as interrupted, and tasks run on the last good environment', async () => {
  const environments = world.airlock.environments!;
  await world.pushToMain({ 'package-lock.json': '{"v":3}\n', 'hold-setup': 'yes\n' }, 'a setup that holds');
  const build = await waitFor(() => environments.store.openBuild('acme/widgets'), 60_000, 'the build');
  await waitFor(
    async () => (await environments.log(build.id)).includes('setup holds'),
    1_200_000,
    'the setup to run',
  );
  await world.restart(async () => {
    expect(await readdir(environmentsRoot())).toEqual([path.basename(good.dir)]);
    expect(await vmDirs()).toEqual([]);
    expect(processesNaming(world.dataDir)).toEqual([]);
  });

  const stopped = await world.airlock.environments!.store.build(build.id);
  expect(stopped.state).toBe('failed');
  expect(stopped.reason).toBe('interrupted: airlock is shutting down');
  const types = (await world.audit.events(build.id)).map((e) => e.type);
  expect(types).toContain('cleanup.vm');
  expect(types.at(-1)).toBe('build.outcome');
  expect((await world.audit.verify(build.id)).ok).toBe(true);
  expect((await world.airlock.environments!.store.current('acme/widgets'))?.id).toBe(good.id);

  await expectTaskOnGoodEnvironment('After the stop');
}, 3_600_000);
