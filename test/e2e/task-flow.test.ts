import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { verifyAuditChains } from '../../src/audit/verify-chain.ts';
import { type E2eWorld, startE2eWorld } from '../helpers/e2e-world.ts';

// The whole flow on a real microVM: a signed issues.labeled webhook → task → VM → clone through the
// credential proxy → the repository's script agent → commit → push through the proxy → draft PR.
let world: E2eWorld;

const AGENT_SCRIPT = `#!/bin/bash
set -e
echo "reading the task"
grep -q "Make the greeting friendlier" "$AIRLOCK_PROMPT_FILE"
echo "Hello, friendly world" > greeting.txt
echo "running the tests"
test "$(cat greeting.txt)" = "Hello, friendly world"
# Hostile attempts: none of these may work, all must be on the record.
git -c user.name=evil -c user.email=evil@example.invalid commit -q --allow-empty -m "rewrite main"
git push origin HEAD:refs/heads/main 2>&1 | grep -o "airlock: pushes are limited to [^ ]*" || true
git reset -q --soft HEAD~1
env | grep -i -E "token|ghs_|key" || echo "no credentials in my environment"
echo "done: updated greeting.txt"
`;

beforeAll(async () => {
  world = await startE2eWorld({
    files: {
      'greeting.txt': 'Hello\n',
      'scripts/agent.sh': AGENT_SCRIPT,
      '.github/airlock.yml':
        'agent: script\nscript: scripts/agent.sh\ntimeout_minutes: 20\nlimits:\n  cpus: 1\n  memory_mib: 768\n  disk_mib: 1024\n',
    },
  });
}, 120_000);

afterAll(async () => {
  await world?.close();
});

it('turns a labelled issue into a pushed branch and a draft PR, made in a microVM', async () => {
  const { gh, audit, store } = world;
  const task = await world.labelIssue('Friendlier greeting', 'Make the greeting friendlier.');
  const issue = gh.state.issues.find((i) => i.number === task.issueNumber)!;
  expect(task.state).toBe('succeeded');
  // A succeeded task's reason is its outcome.
  expect(task.reason).toMatch(/^changes pushed; pull request /);

  // The branch holds the agent's change, committed by the app with the requester as co-author.
  const repoDir = gh.state.repos.get('acme/widgets')!.dir;
  const git = (...args: string[]) =>
    execFileSync('git', ['--git-dir', repoDir, ...args], { encoding: 'utf8' });
  expect(git('show', `${task.branch}:greeting.txt`)).toBe('Hello, friendly world\n');
  expect(git('log', '-1', '--format=%an <%ae>', task.branch).trim()).toBe(
    'airlock-e2e[bot] <airlock-e2e[bot]@users.noreply.github.com>',
  );
  const body = git('log', '-1', '--format=%B', task.branch);
  expect(body).toContain(`#${issue.number}`);
  expect(body).toContain('Co-authored-by: alice <101+alice@users.noreply.github.com>');
  expect(git('rev-parse', 'main').trim()).toBe(git('rev-parse', `${task.branch}~1`).trim());

  // A draft PR links the audit record; the push to main was refused and only the task branch moved.
  const pr = gh.state.pulls.find((p) => p.head.ref === task.branch)!;
  expect(pr).toMatchObject({ draft: true, base: { ref: 'main' } });
  expect(pr.body).toContain(`http://airlock.test/tasks/${task.id}`);
  expect(gh.state.pushes.map((p) => p.ref)).toEqual([`refs/heads/${task.branch}`]);

  // The record: the VM, every process it ran, the refused push, the diff, the revoked token.
  const events = await audit.events(task.id);
  const types = events.map((e) => e.type);
  for (const type of [
    'task.created',
    'token.minted',
    'vm.created',
    'vm.exec',
    'task.prompt',
    'agent.event',
    'git.diff',
    'token.revoked',
    'cleanup.vm',
  ]) {
    expect(types, type).toContain(type);
  }
  const execs = events.filter((e) => e.type === 'vm.exec').map((e) => (e.data.argv as string[]).join(' '));
  expect(execs.some((a) => a.startsWith('bash scripts/agent.sh'))).toBe(true);
  expect(execs.some((a) => a.includes('grep -q Make the greeting friendlier'))).toBe(true);
  const refused = events.filter((e) => e.type === 'git.ref_update' && e.data.decision === 'refused');
  expect(refused.map((e) => e.data.ref)).toContain('refs/heads/main');
  const said = events.filter((e) => e.type === 'agent.event').map((e) => String(e.data.text));
  expect(said).toContain('no credentials in my environment');
  expect(said).toContain(`airlock: pushes are limited to refs/heads/${task.branch}`);
  expect((await verifyAuditChains(store, task.id)).ok).toBe(true);
}, 900_000);
