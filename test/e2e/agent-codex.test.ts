import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { AgentEvent } from '../../src/agents/agent-event.ts';
import { verifyAuditChains } from '../../src/audit/verify-chain.ts';
import type { Task } from '../../src/tasks/task.ts';
import { agentFilesSandbox } from '../helpers/agent-files-sandbox.ts';
import { type E2eWorld, startE2eWorld } from '../helpers/e2e-world.ts';
import {
  SCRIPTED_USAGE,
  type ScriptedModelServer,
  type ScriptStep,
  startScriptedModelServer,
} from '../helpers/scripted-model-server.ts';

// The real Codex CLI in a real microVM (TCG here), reaching the model only through the task's
// credential proxy, whose upstream is a scripted model server speaking the Responses API over SSE.
// The script makes the agent patch files, then run a command that prints the environment of every
// process it can read (Codex's own included), then finish. Which script answers is chosen by a
// word in the issue, so one world serves the edit, no-change and failure cases.

const MODEL_KEY = `sk-airlock-e2e-${randomBytes(16).toString('hex')}`;
const PROMPT_MARKER = `marker-${randomBytes(6).toString('hex')}`;

const PATCH = [
  '*** Begin Patch',
  '*** Update File: greeting.txt',
  '@@',
  '-Hello',
  '+Hello, friendly world',
  '*** Add File: docs/greeting.md',
  '+# Greeting',
  '+',
  '+The greeting is friendly now.',
  '*** End Patch',
  '',
].join('\n');
const CHECK_COMMAND =
  "grep -c friendly greeting.txt; for p in /proc/[0-9]*; do tr '\\0' '\\n' < $p/environ 2>/dev/null; done | sort -u";

const SCRIPTS: Record<string, ScriptStep[]> = {
  edit: [
    { type: 'custom_tool_call', name: 'apply_patch', input: PATCH },
    { type: 'tool_call', name: 'exec_command', arguments: { cmd: CHECK_COMMAND, yield_time_ms: 10_000 } },
    { type: 'message', text: 'Made the greeting friendlier and documented it.' },
  ],
  'no-change': [{ type: 'message', text: 'No change is needed: the greeting already says hello.' }],
  fail: [{ type: 'error', status: 400, message: 'scripted refusal: this request cannot be served' }],
};

let model: ScriptedModelServer;
let world: E2eWorld;
/** What the host read out of each VM just before it was destroyed: every file the agent could write. */
const scans: string[] = [];

beforeAll(async () => {
  model = await startScriptedModelServer({
    openai: (body) => {
      const scenario = /SCENARIO: ([a-z-]+)/.exec(body)?.[1] ?? 'fail';
      return SCRIPTS[scenario] ?? SCRIPTS.fail!;
    },
  });
  world = await startE2eWorld({
    files: {
      'greeting.txt': 'Hello\n',
      '.github/airlock.yml':
        'agent: codex\nmodel: gpt-5.5\ntimeout_minutes: 20\nlimits:\n  cpus: 1\n  memory_mib: 1024\n  disk_mib: 1024\n',
    },
    models: { openai: { url: model.url, apiKey: MODEL_KEY } },
    wrapSandbox: (real) => agentFilesSandbox(real, (contents) => scans.push(contents)),
  });
}, 120_000);

afterAll(async () => {
  await world?.close();
  await model?.close();
});

const agentEvents = async (task: Task) =>
  (await world.audit.events(task.id))
    .filter((e) => e.type === 'agent.event')
    .map((e) => e.data as AgentEvent);

const git = (...args: string[]) =>
  execFileSync('git', ['--git-dir', world.gh.state.repos.get('acme/widgets')!.dir, ...args], {
    encoding: 'utf8',
  });

it('runs Codex in the VM: it patches files and runs a command through the proxy, and the change is pushed as the app', async () => {
  const seenBefore = model.requests.length;
  const task = await world.labelIssue(
    'Friendlier greeting',
    `Make the greeting friendlier. ${PROMPT_MARKER}\n\nSCENARIO: edit`,
  );
  // A succeeded task's reason is its outcome.
  expect(task.reason ?? '').toMatch(/^changes pushed/);
  expect(task.state).toBe('succeeded');
  expect(task.result).toMatchObject({
    outcome: 'changes_pushed',
    summary: 'Made the greeting friendlier and documented it.',
  });

  // The pushed commit: the agent's edits, under the app's identity, with the requester as co-author.
  expect(git('show', `${task.branch}:greeting.txt`)).toBe('Hello, friendly world\n');
  expect(git('show', `${task.branch}:docs/greeting.md`)).toBe(
    '# Greeting\n\nThe greeting is friendly now.\n',
  );
  expect(git('log', '-1', '--format=%an <%ae>', task.branch).trim()).toBe(
    'airlock-e2e[bot] <airlock-e2e[bot]@users.noreply.github.com>',
  );
  const message = git('log', '-1', '--format=%B', task.branch);
  expect(message).toContain(`#${task.issueNumber}`);
  expect(message).toContain(`Audit record: task ${task.id}`);
  expect(message).toContain('Co-authored-by: alice <101+alice@users.noreply.github.com>');
  expect(git('rev-parse', 'main').trim()).toBe(git('rev-parse', `${task.branch}~1`).trim());
  expect(world.gh.state.pulls.find((p) => p.head.ref === task.branch)).toMatchObject({ draft: true });

  // The normalized events, in the order the agent produced them.
  const events = await agentEvents(task);
  const meaningful = events.filter((e) => e.kind !== 'raw');
  expect(meaningful.map((e) => e.kind)).toEqual([
    'session',
    'tool_call',
    'file_edit',
    'file_edit',
    'tool_call',
    'command',
    'message',
    'usage',
  ]);
  // One patch, two files: Codex lists them in no particular order.
  const edits = meaningful.filter((e) => e.kind === 'file_edit');
  expect(edits).toHaveLength(2);
  expect(edits).toEqual(
    expect.arrayContaining([
      { kind: 'file_edit', path: 'greeting.txt', change: 'update' },
      { kind: 'file_edit', path: 'docs/greeting.md', change: 'add' },
    ]),
  );
  const command = meaningful.find((e) => e.kind === 'command');
  expect(command).toMatchObject({
    exitCode: 0,
    command: expect.stringContaining('grep -c friendly greeting.txt'),
  });
  expect(meaningful.at(-1)).toEqual({
    kind: 'usage',
    inputTokens: 3 * SCRIPTED_USAGE.input,
    outputTokens: 3 * SCRIPTED_USAGE.output,
    cachedInputTokens: 0,
  });
  const record = await world.audit.events(task.id);
  const types = record.map((e) => e.type);
  expect(types.indexOf('task.prompt')).toBeLessThan(types.indexOf('agent.event'));
  expect(types.lastIndexOf('agent.event')).toBeLessThan(types.indexOf('agent.exit'));
  expect(record.find((e) => e.type === 'agent.info')?.data).toEqual({
    agent: 'codex',
    version: expect.stringMatching(/^\d+\.\d+\.\d+$/),
    model: 'gpt-5.5',
  });
  // The command Codex ran is in the guest's exec audit too, with the agent user's uid.
  const execs = record.filter((e) => e.type === 'vm.exec');
  expect(execs.some((e) => (e.data.argv as string[]).some((a) => a.includes('codex')))).toBe(true);
  expect(execs.some((e) => (e.data.argv as string[]).join(' ').includes('grep -c friendly'))).toBe(true);
  expect(record.find((e) => e.type === 'cleanup.proxy')?.data.usage).toEqual({
    inputTokens: 3 * SCRIPTED_USAGE.input,
    outputTokens: 3 * SCRIPTED_USAGE.output,
  });
  // Codex was configured to try nothing but the model: no egress attempt at all.
  expect(record.filter((e) => e.type === 'proxy.egress').map((e) => e.data.host)).toEqual([]);
  expect((await verifyAuditChains(world.store, task.id)).ok).toBe(true);

  // The model saw only what came through the proxy: three turns, each with the real key that the
  // proxy put on, carrying the tool outputs back.
  const requests = model.requests.slice(seenBefore);
  expect(requests.map((r) => `${r.method} ${r.path} ${r.step}`)).toEqual([
    'POST /v1/responses 0',
    'POST /v1/responses 1',
    'POST /v1/responses 2',
  ]);
  expect(requests[0]!.body).toContain(PROMPT_MARKER);
  expect(requests[1]!.body).toContain('custom_tool_call_output');
  const envDump = String(command?.kind === 'command' ? command.output : '');
  // Positive control: the command read Codex's own environment, placeholder key and all.
  expect(envDump).toContain('OPENAI_API_KEY=airlock-placeholder-key');
  expect(envDump).toContain('CODEX_HOME=/home/agent/.codex');
  expect(requests[2]!.body).toContain('OPENAI_API_KEY=airlock-placeholder-key');

  // The key never entered the VM: not in any process environment, not in any file the agent
  // could write, not in anything the guest sent (the upstream sees it only in the header).
  expect(envDump).not.toContain(MODEL_KEY);
  const scan = scans.at(-1)!;
  expect(scan).toContain(PROMPT_MARKER); // the scan reads the files: the prompt file is among them
  expect(scan).toContain('Hello, friendly world');
  expect(scan).not.toContain(MODEL_KEY);
  for (const request of requests) {
    expect(request.headers.authorization).toBe(`Bearer ${MODEL_KEY}`);
    expect(request.body).not.toContain(MODEL_KEY);
    const otherHeaders = Object.entries(request.headers).filter(([name]) => name !== 'authorization');
    expect(JSON.stringify(otherHeaders)).not.toContain(MODEL_KEY);
  }
  expect(JSON.stringify(record)).not.toContain(MODEL_KEY);
}, 900_000);

it('ends with no change when the agent changes nothing, and the tracking comment carries its explanation', async () => {
  const task = await world.labelIssue('Check the greeting', 'Is the greeting fine?\n\nSCENARIO: no-change');
  expect(task.state).toBe('succeeded');
  expect(task.reason).toBe('the agent made no change');
  expect(task.result).toMatchObject({
    outcome: 'no_changes',
    summary: 'No change is needed: the greeting already says hello.',
  });
  expect(world.gh.state.pushes.some((p) => p.ref === `refs/heads/${task.branch}`)).toBe(false);
  expect(world.gh.state.pulls.some((p) => p.head.ref === task.branch)).toBe(false);
  const comment = world.gh.state.comments.find(
    (c) => c.issueNumber === task.issueNumber && c.body.includes(task.id),
  );
  expect(comment?.body).toContain('The agent made no change.');
  expect(comment?.body).toContain('> No change is needed: the greeting already says hello.');
  expect((await agentEvents(task)).filter((e) => e.kind === 'message')).toEqual([
    { kind: 'message', role: 'assistant', text: 'No change is needed: the greeting already says hello.' },
  ]);
}, 900_000);

it("fails with the agent's own reason when the CLI cannot finish, and pushes nothing", async () => {
  const task = await world.labelIssue('Break the greeting', 'Try this.\n\nSCENARIO: fail');
  expect(task.state).toBe('failed');
  expect(task.reason).toMatch(/^agent_failed: the codex agent exited with 1: /);
  expect(task.reason).toContain('scripted refusal: this request cannot be served');
  expect(world.gh.state.pushes.some((p) => p.ref === `refs/heads/${task.branch}`)).toBe(false);
  const events = await world.audit.events(task.id);
  expect(
    events.some(
      (e) =>
        e.type === 'agent.event' &&
        e.data.kind === 'error' &&
        String(e.data.message).includes('scripted refusal'),
    ),
  ).toBe(true);
  expect(events.find((e) => e.type === 'cleanup.vm')?.data).toMatchObject({
    processGone: true,
    overlayDeleted: true,
  });
  expect(events.find((e) => e.type === 'cleanup.proxy')?.data).toMatchObject({ tokenRevoked: true });
}, 900_000);
