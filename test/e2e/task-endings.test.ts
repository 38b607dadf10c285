import { afterAll, beforeAll, expect, it } from 'vitest';
import { type E2eWorld, startE2eWorld } from '../helpers/e2e-world.ts';
import {
  type FixedAnthropicUpstream,
  startFixedAnthropicUpstream,
} from '../helpers/fixed-anthropic-upstream.ts';
import { waitFor } from '../helpers/wait-for.ts';
import { examplePayload } from '../helpers/webhook-examples.ts';

// How a task ends when it must stop early, on real microVMs: a model budget overrun and a
// cancellation by the person who asked. Each ends with its own reason, nothing is pushed, the VM is
// destroyed and the token revoked.
const AGENT_SCRIPT = `#!/bin/bash
set -e
if grep -q "SCENARIO: budget" "$AIRLOCK_PROMPT_FILE"; then
  node -e '
  fetch("http://10.0.2.100/anthropic/v1/messages", {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": "placeholder", "anthropic-version": "2023-06-01" },
    body: JSON.stringify({ model: "claude-test", max_tokens: 16, messages: [{ role: "user", content: "hi" }] }),
  }).then(async (r) => console.log("model answered", r.status));
  '
fi
echo "working"
sleep 120
echo "half-way" > half-way.txt
`;

let world: E2eWorld;
let upstream: FixedAnthropicUpstream;

beforeAll(async () => {
  // A model that spends far more than the repository's budget on one answer.
  upstream = await startFixedAnthropicUpstream({ input_tokens: 400, output_tokens: 200 });
  world = await startE2eWorld({
    files: {
      'README.md': '# widgets\n',
      'scripts/agent.sh': AGENT_SCRIPT,
      '.github/airlock.yml':
        'agent: script\nscript: scripts/agent.sh\nbudget:\n  max_tokens: 100\nlimits:\n  cpus: 1\n  memory_mib: 512\n  disk_mib: 512\n',
    },
    models: {
      anthropic: {
        url: upstream.url,
        apiKey: 'sk-test-budget',
      },
    },
  });
}, 120_000);

afterAll(async () => {
  await world?.close();
  upstream?.close();
});

async function expectStoppedCleanly(taskId: string) {
  const types = (await world.audit.events(taskId)).map((e) => e.type);
  const cleanupVm = (await world.audit.events(taskId)).find((e) => e.type === 'cleanup.vm')!;
  expect(cleanupVm.data).toMatchObject({ processGone: true, overlayDeleted: true });
  const cleanupProxy = (await world.audit.events(taskId)).find((e) => e.type === 'cleanup.proxy')!;
  expect(cleanupProxy.data).toMatchObject({ listenerClosed: true, tokenRevoked: true });
  expect(types).toContain('token.revoked');
  expect(types).not.toContain('git.diff');
  expect(world.gh.state.pushes).toEqual([]);
  // Task tokens are the ones scoped to contents alone; the control plane's own are broader.
  const taskTokens = world.gh.state.tokens.filter(
    (t) => Object.keys(t.permissions).sort().join() === 'contents,metadata',
  );
  expect(taskTokens.length).toBeGreaterThan(0);
  expect(taskTokens.filter((t) => !t.revoked)).toEqual([]);
}

it('stops a task whose model use goes over its budget', async () => {
  const task = await world.labelIssue('Spend', 'SCENARIO: budget');
  expect(task.state).toBe('failed');
  expect(task.reason).toMatch(/^budget_exceeded: the task used 600 model tokens, over its budget/);
  const types = (await world.audit.events(task.id)).map((e) => e.type);
  expect(types).toContain('proxy.budget_exceeded');
  await expectStoppedCleanly(task.id);
}, 600_000);

it('cancels a running task when the person who asked says /airlock cancel', async () => {
  const issue = world.gh.createIssue('acme/widgets', {
    title: 'Wait',
    body: 'SCENARIO: wait',
    user: 'alice',
  });
  const labeled = examplePayload('issues', 'labeled', {
    repo: { id: 1, fullName: 'acme/widgets' },
    sender: { login: 'alice', id: 101 },
    installationId: world.installationId,
  });
  labeled.issue = { ...labeled.issue, number: issue.number, title: issue.title, pull_request: undefined };
  labeled.label = { ...labeled.label, name: 'airlock' };
  await world.send('issues', labeled, 'cancel-label');
  const running = await waitFor(
    async () => {
      const task = (await world.plane.tasks.list()).find((t) => t.issueNumber === issue.number);
      const working =
        task &&
        (await world.audit.events(task.id)).some(
          (e) => e.type === 'agent.event' && e.data.text === 'working',
        );
      return working ? task : undefined;
    },
    300_000,
    'the agent to start working',
  );

  const comment = examplePayload('issue_comment', 'created', {
    repo: { id: 1, fullName: 'acme/widgets' },
    sender: { login: 'alice', id: 101 },
    installationId: world.installationId,
  });
  comment.issue = { ...comment.issue, number: issue.number, pull_request: undefined };
  const posted = world.gh.addComment('acme/widgets', issue.number, {
    body: '/airlock cancel',
    user: 'alice',
  });
  comment.comment = {
    ...comment.comment,
    id: posted.id,
    body: '/airlock cancel',
    performed_via_github_app: null,
  };
  await world.send('issue_comment', comment, 'cancel-comment');

  const task = await waitFor(
    async () => {
      const t = await world.plane.tasks.get(running.id);
      return t.state === 'cancelled' ? t : undefined;
    },
    120_000,
    'the task to be cancelled',
  );
  await world.plane.quiesce();
  expect(task.reason).toContain('alice');
  await expectStoppedCleanly(task.id);
}, 600_000);
