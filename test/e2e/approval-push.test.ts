import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { verifyAuditChains } from '../../src/audit/verify-chain.ts';
import { type E2eWorld, startE2eWorld } from '../helpers/e2e-world.ts';
import { waitFor } from '../helpers/wait-for.ts';
import { examplePayload } from '../helpers/webhook-examples.ts';

// approval.before_push: always on a real microVM: the agent's push goes through the credential
// proxy into a repository on the host, nothing reaches the GitHub emulator, and only a person's
// approval makes the host push exactly the held commit and open the PR.
let world: E2eWorld;

const AGENT_SCRIPT = `#!/bin/bash
set -e
echo "Hello, held world" > greeting.txt
echo "done: updated greeting.txt"
`;

beforeAll(async () => {
  world = await startE2eWorld({
    files: {
      'greeting.txt': 'Hello\n',
      'scripts/agent.sh': AGENT_SCRIPT,
      '.github/airlock.yml': [
        'agent: script',
        'script: scripts/agent.sh',
        'timeout_minutes: 20',
        'limits:\n  cpus: 1\n  memory_mib: 768\n  disk_mib: 1024',
        'approval:\n  before_push: always',
        '',
      ].join('\n'),
    },
  });
}, 120_000);

afterAll(async () => {
  await world?.close();
});

it('holds the agent’s push on the host until approval, then pushes exactly the approved commit', async () => {
  const { gh, audit, airlock } = world;
  const task = await world.labelIssue('Held greeting', 'Change the greeting.', {
    until: ['awaiting_approval', 'failed', 'succeeded'],
  });
  expect(task.state).toBe('awaiting_approval');
  const repoDir = gh.state.repos.get('acme/widgets')!.dir;
  const git = (dir: string, ...args: string[]) =>
    execFileSync('git', ['--git-dir', dir, ...args], { encoding: 'utf8' });

  // Nothing reached GitHub: no branch, no push, no pull request.
  expect(gh.state.pushes).toEqual([]);
  expect(await gh.branchSha('acme/widgets', task.branch)).toBeUndefined();
  expect(gh.state.pulls).toEqual([]);

  // The proxy received the push into the host's held repository, and the VM is gone.
  const held = (await airlock.held.get(task.id))!;
  expect(held.files).toEqual([{ path: 'greeting.txt', added: 1, deleted: 1 }]);
  expect(git(held.repoPath, 'show', `${held.headSha}:greeting.txt`)).toBe('Hello, held world\n');
  expect(held.baseSha).toBe(git(repoDir, 'rev-parse', 'main').trim());
  expect(existsSync(held.bundlePath)).toBe(true);
  const events = await audit.events(task.id);
  const update = events.find((e) => e.type === 'git.ref_update')!;
  expect(update.data).toMatchObject({
    ref: `refs/heads/${task.branch}`,
    new: held.headSha,
    decision: 'held',
  });
  expect(
    events
      .filter((e) => e.type === 'proxy.git' && e.data.service === 'git-receive-pack')
      .map((e) => e.data.decision),
  ).toEqual(expect.arrayContaining(['held']));
  expect(
    events.some(
      (e) =>
        e.type === 'proxy.git' && e.data.service === 'git-receive-pack' && e.data.decision === 'forwarded',
    ),
  ).toBe(false);
  expect(events.some((e) => e.type === 'cleanup.vm')).toBe(true);
  const [pending] = await airlock.approvals.forTask(task.id);
  expect(pending).toMatchObject({ gate: 'push', state: 'pending' });
  expect(pending!.shown).toMatchObject({ gate: 'push', head: held.headSha });
  expect(
    (pending!.shown as { commands: string[] }).commands.some((c) => c.includes('scripts/agent.sh')),
  ).toBe(true);

  // alice approves with a comment; the host pushes the held commit with a token minted for it.
  const payload = examplePayload('issue_comment', 'created', {
    repo: { id: 1, fullName: 'acme/widgets' },
    sender: { login: 'alice', id: 101 },
    installationId: world.installationId,
  });
  payload.issue.number = task.issueNumber;
  payload.issue.pull_request = undefined;
  payload.comment.body = '/airlock approve';
  payload.comment.id = 90_001;
  payload.comment.performed_via_github_app = null;
  await world.send('issue_comment', payload, 'e2e-approve');
  await waitFor(
    async () => (await world.plane.tasks.get(task.id)).state === 'succeeded',
    120_000,
    'the approved push',
  );
  expect(await gh.branchSha('acme/widgets', task.branch)).toBe(held.headSha);
  expect(gh.state.pushes.map((p) => p.ref)).toEqual([`refs/heads/${task.branch}`]);
  expect(gh.state.pulls.find((p) => p.head.ref === task.branch)).toMatchObject({ draft: true });
  expect((await verifyAuditChains(world.store, task.id)).ok).toBe(true);
  await waitFor(() => !existsSync(held.repoPath), 15_000, 'the held repository to be deleted');
}, 900_000);
