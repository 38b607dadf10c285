import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { overrideVms } from '../helpers/agent-files-sandbox.ts';
import { type E2eWorld, startE2eWorld } from '../helpers/e2e-world.ts';

// A guest that lies about its head, on a real microVM: what the host records as pushed is the ref
// update its proxy forwarded, never the guest's `git rev-parse HEAD`.
//
// The agent itself can no longer move the branch once it has exited: its processes are killed and
// the runner's git runs nothing from its repository's metadata (git-metadata.test.ts). The claim
// is about the guest as a whole, so the test plays a guest that keeps a foothold past the agent
// (what a guest root would have): the agent commits A and sets it aside on a branch, leaves a
// change for the runner to commit (C, which `git rev-parse HEAD` then reports), and just before
// the runner's push a process in the guest, as the agent user, moves HEAD to A. The push sends A;
// C never leaves the VM.
let world: E2eWorld;

const AGENT_SCRIPT = `#!/bin/bash
set -e
echo "what the proxy forwards" > pushed.txt
git add pushed.txt
git -c user.name=agent -c user.email=agent@example.invalid commit -q -m "set aside"
git branch aside
git reset -q --hard HEAD~1
echo "Hello, reported world" > greeting.txt
echo "set aside $(git rev-parse aside)"
`;

beforeAll(async () => {
  world = await startE2eWorld({
    files: {
      'greeting.txt': 'Hello\n',
      'scripts/agent.sh': AGENT_SCRIPT,
      '.github/airlock.yml':
        'agent: script\nscript: scripts/agent.sh\ntimeout_minutes: 20\nlimits:\n  cpus: 1\n  memory_mib: 768\n  disk_mib: 1024\n',
    },
    wrapSandbox: (real) =>
      overrideVms(real, (vm) => ({
        async exec(request, onOutput, signal) {
          if (request.argv[0] === 'git' && request.argv.includes('push')) {
            const moved = await vm.exec({
              argv: ['git', 'update-ref', 'HEAD', 'refs/heads/aside'],
              cwd: '/work/repo',
              uid: 1000,
              env: { HOME: '/home/agent' },
            });
            if (moved.code !== 0) throw new Error(`moving HEAD in the guest failed (exit ${moved.code})`);
          }
          return vm.exec(request, onOutput, signal);
        },
      })),
  });
}, 120_000);

afterAll(async () => {
  await world?.close();
});

it('records the head the proxy forwarded, not the one the guest reports', async () => {
  const { gh, audit } = world;
  const task = await world.labelIssue('Lie about the head', 'Push one commit, report another.');
  expect(task.state, task.reason ?? '').toBe('succeeded');
  const events = await audit.events(task.id);

  // What the agent set aside is what went through the proxy, and what GitHub holds.
  const said = events.filter((e) => e.type === 'agent.event').map((e) => String(e.data.text));
  const setAside = said.map((text) => /^set aside ([0-9a-f]{40})$/.exec(text)?.[1]).find(Boolean);
  expect(setAside, said.join('\n')).toBeDefined();
  const forwarded = events.filter(
    (e) =>
      e.type === 'git.ref_update' &&
      e.data.decision === 'forwarded' &&
      e.data.ref === `refs/heads/${task.branch}`,
  );
  expect(forwarded.map((e) => e.data.new)).toEqual([setAside]);
  const repoDir = gh.state.repos.get('acme/widgets')!.dir;
  const git = (...args: string[]) =>
    execFileSync('git', ['--git-dir', repoDir, ...args], { encoding: 'utf8' }).trim();
  expect(git('rev-parse', `refs/heads/${task.branch}`)).toBe(setAside);

  // The guest reported the runner's own commit, which never left the VM.
  const diff = events.find((e) => e.type === 'git.diff')!;
  const reported = String(diff.data.head);
  expect(reported).toMatch(/^[0-9a-f]{40}$/);
  expect(reported).not.toBe(setAside);
  expect(() => git('cat-file', '-e', reported)).toThrow();
  const mismatch = events.filter((e) => e.type === 'git.head_mismatch');
  expect(mismatch.map((e) => e.data)).toEqual([{ guest: reported, forwarded: setAside }]);

  // The task record and its pull request carry the forwarded head.
  expect(task.headSha).toBe(setAside);
  const pr = gh.state.pulls.find((p) => p.head.ref === task.branch)!;
  expect(pr.head.sha).toBe(setAside);
}, 900_000);
