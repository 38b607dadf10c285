import { execFileSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type DebianFixtureServer, serveDebianFixture } from '../helpers/debian-fixture.ts';
import { type E2eWorld, startE2eWorld } from '../helpers/e2e-world.ts';

// A Python repository on real microVMs, with no internet: its environment installs python3-pytest
// (not in the base image) from the Debian archive the operator configured (here the local
// repository .ci/debian-fixture.sh built, named by AIRLOCK_DEBIAN_SOURCES), which the build's VM
// reaches only through its proxy's Debian route; the task restores that environment and its
// script agent runs pytest in the VM.
let world: E2eWorld;
let debian: DebianFixtureServer;
let scratch: string;

const AGENT = `#!/bin/bash
set -eo pipefail
command -v pytest > /dev/null || { echo "pytest is not installed"; exit 1; }
pytest -q -p no:cacheprovider tests 2>&1 | tee pytest-report.txt
`;
const CONFIG = `agent: script
script: scripts/agent.sh
timeout_minutes: 90
limits:
  cpus: 1
  memory_mib: 768
  disk_mib: 1024
environment:
  packages: [python3-pytest]
`;

beforeAll(async () => {
  debian = await serveDebianFixture();
  scratch = await mkdtemp(path.join(tmpdir(), 'airlock-e2e-python-'));
  world = await startE2eWorld({
    files: {
      '.gitignore': '__pycache__/\n',
      'calc.py': 'def add(a, b):\n    return a + b\n',
      'tests/test_calc.py':
        'from calc import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n\n\ndef test_add_negative():\n    assert add(-1, 1) == 0\n',
      'pytest.ini': '[pytest]\npythonpath = .\n',
      'scripts/agent.sh': AGENT,
      '.github/airlock.yml': CONFIG,
    },
    env: { AIRLOCK_DEBIAN_SOURCES: await debian.writeSources(path.join(scratch, 'debian.list')) },
  });
}, 180_000);

afterAll(async () => {
  await world?.close();
  await debian?.close();
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

it(
  'builds python3-pytest into the environment through the Debian route, and the task runs pytest in the VM',
  async () => {
    const task = await world.labelIssue('Run the tests', 'Run the test suite and report.', {
      timeoutMs: 90 * 60_000,
    });
    expect(task.state, task.reason ?? '').toBe('succeeded');

    // The build installed the package, from the configured archive, through its proxy only.
    const store = world.airlock.environments!.store;
    const [build] = await store.listBuilds();
    expect(build).toMatchObject({ state: 'succeeded', trigger: { kind: 'task' } });
    const buildEvents = await world.audit.events(build!.id, { limit: 100_000 });
    expect(buildEvents.find((e) => e.type === 'build.packages')?.data.packages).toEqual(['python3-pytest']);
    // apt asks for InRelease and Release.gpg first (404 from an unsigned archive), then the rest.
    const fetched = buildEvents.filter((e) => e.type === 'proxy.debian');
    expect(fetched.filter((e) => e.data.decision !== 'forwarded')).toEqual([]);
    const debs = fetched.filter((e) => String(e.data.path).endsWith('.deb'));
    expect(debs.map((e) => e.data.status)).toEqual(debs.map(() => 200));
    expect(debs.map((e) => String(e.data.path))).toContainEqual(
      expect.stringMatching(/python3-pytest_.*\.deb$/),
    );
    expect(debian.requests).toContainEqual(expect.stringMatching(/^\/pool\/python3-pytest_.*\.deb$/));
    expect(buildEvents.filter((e) => e.type === 'proxy.egress')).toEqual([]);
    expect((await world.audit.verify(build!.id)).ok).toBe(true);

    // The task restored it, installed nothing, and its agent ran pytest: its output is in the record.
    const events = await world.audit.events(task.id, { limit: 100_000 });
    expect(events.find((e) => e.type === 'environment.restore')?.data.environment).toBe(build!.environmentId);
    expect(events.filter((e) => e.type === 'proxy.debian')).toEqual([]);
    const execs = events.filter((e) => e.type === 'vm.exec').map((e) => (e.data.argv as string[]).join(' '));
    expect(execs.some((argv) => /\bpytest\b/.test(argv))).toBe(true);
    expect(execs.filter((argv) => /\b(apt-get|dpkg)\b/.test(argv))).toEqual([]);
    const said = events
      .filter((e) => e.type === 'agent.event' && e.data.kind === 'message')
      .map((e) => String(e.data.text));
    expect(said).toContainEqual(expect.stringMatching(/^2 passed in [\d.]+s$/));
    const report = execFileSync(
      'git',
      [
        '--git-dir',
        world.gh.state.repos.get('acme/widgets')!.dir,
        'show',
        `${task.branch}:pytest-report.txt`,
      ],
      { encoding: 'utf8' },
    );
    expect(report).toMatch(/2 passed/);
  },
  100 * 60_000,
);
