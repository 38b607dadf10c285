import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { inspectBeforeDestroy } from '../helpers/agent-files-sandbox.ts';
import { type E2eWorld, startE2eWorld } from '../helpers/e2e-world.ts';

// The agent is done when its main process exits (invariant 11), and that includes the programs it
// names in its repository's git metadata. After it exits, the runner commits, diffs and pushes in
// the agent's own workspace; git would run a hook, an external diff program, a clean filter and an
// fsmonitor hook the agent set up there. Each of those programs here writes a marker file in the
// guest and puts words of its own where git would take them (the filter replaces every file's
// content, the external diff prints a diff of its own). None may run: no marker, the pushed commit
// is exactly the agent's change, and the recorded diff is the real one.
let world: E2eWorld;
let markers: string | undefined;

const MARKERS = '/tmp/markers';

const AGENT_SCRIPT = `#!/bin/bash
set -e
echo "Hello, world" > greeting.txt
mkdir -p ${MARKERS}
plant() {
  printf '#!/bin/sh\\ntouch ${MARKERS}/%s\\n%s\\n' "$2" "$3" > "$1"
  chmod +x "$1"
}
plant .git/hooks/pre-commit pre-commit ''
plant .git/fake-diff diff-external 'echo "diff --git a/nothing b/nothing"; echo "+forged by the agent"'
git config diff.external "$PWD/.git/fake-diff"
plant .git/swap filter-clean 'cat > /dev/null; echo "replaced by the filter"'
git config filter.swap.clean "$PWD/.git/swap"
echo '* filter=swap' > .gitattributes
plant .git/fsmonitor fsmonitor 'exit 1'
git config core.fsmonitor "$PWD/.git/fsmonitor"
echo "planted"
`;

beforeAll(async () => {
  world = await startE2eWorld({
    files: {
      'greeting.txt': 'Hello\n',
      'scripts/agent.sh': AGENT_SCRIPT,
      '.github/airlock.yml':
        'agent: script\nscript: scripts/agent.sh\ntimeout_minutes: 20\nlimits:\n  cpus: 1\n  memory_mib: 768\n  disk_mib: 1024\n',
    },
    // Just before the VM goes: which markers exist in the guest.
    wrapSandbox: (real) =>
      inspectBeforeDestroy(real, async (vm) => {
        let out = '';
        const listed = await vm.exec({ argv: ['ls', '-A', MARKERS] }, (_s, data) => {
          out += data;
        });
        markers = listed.code === 0 ? out : `listing ${MARKERS} failed (exit ${listed.code}): ${out}`;
      }),
  });
}, 120_000);

afterAll(async () => {
  await world?.close();
});

it('runs nothing the agent put in its git metadata after it exits: hooks, external diff, filters, fsmonitor', async () => {
  const { gh, audit } = world;
  const task = await world.labelIssue('Plant git programs', 'Change the greeting.');
  expect(task.state, task.reason ?? '').toBe('succeeded');
  const events = await audit.events(task.id);

  // None of the planted programs ran: no marker in the guest, none of them in its exec record
  // (a script's record names its interpreter, then the script).
  expect(markers, 'the guest was inspected before it was destroyed').toBe('');
  const planted = ['hooks/pre-commit', 'fake-diff', 'swap', 'fsmonitor'].map((p) => `/work/repo/.git/${p}`);
  const ran = events.filter((e) => {
    const argv = e.data.argv as string[];
    return e.type === 'vm.exec' && (argv[0] === 'touch' || argv.slice(0, 2).some((a) => planted.includes(a)));
  });
  expect(ran.map((e) => e.data.argv)).toEqual([]);

  // The pushed commit is the agent's change, byte for byte: its files as the agent wrote them.
  const repoDir = gh.state.repos.get('acme/widgets')!.dir;
  const git = (...args: string[]) =>
    execFileSync('git', ['--git-dir', repoDir, ...args], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null' },
    });
  const head = `refs/heads/${task.branch}`;
  expect(git('rev-parse', head).trim()).toBe(task.headSha);
  expect(git('diff-tree', '--no-commit-id', '--name-only', '-r', `${head}~1`, head).split('\n')).toEqual([
    '.gitattributes',
    'greeting.txt',
    '',
  ]);
  expect(git('show', `${head}:greeting.txt`)).toBe('Hello, world\n');
  expect(git('show', `${head}:.gitattributes`)).toBe('* filter=swap\n');

  // The recorded diff is the real one, as git on the host computes it from what was pushed.
  const diff = events.find((e) => e.type === 'git.diff')!;
  expect(diff.data.head).toBe(task.headSha);
  expect(diff.data.patch).toBe(git('diff', String(diff.data.base), String(diff.data.head)));
  expect(String(diff.data.patch)).not.toContain('forged');

  // The record shows what the agent had set up, and that it was taken away before the commit.
  const reset = events.filter((e) => e.type === 'git.metadata_reset');
  expect(reset).toHaveLength(1);
  expect(reset[0]!.data).toMatchObject({
    config: expect.arrayContaining([
      'diff.external=/work/repo/.git/fake-diff',
      'filter.swap.clean=/work/repo/.git/swap',
      'core.fsmonitor=/work/repo/.git/fsmonitor',
    ]),
    removed: ['hooks/pre-commit'],
  });
  const types = events.map((e) => e.type);
  expect(types.indexOf('agent.exit')).toBeLessThan(types.indexOf('git.metadata_reset'));
  expect(types.indexOf('git.metadata_reset')).toBeLessThan(types.indexOf('git.diff'));
}, 900_000);
