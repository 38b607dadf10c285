import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AgentEvent } from '../../src/agents/agent-event.ts';
import type { ModelUpstreams } from '../../src/proxy/model-proxy.ts';
import type { Task } from '../../src/tasks/task.ts';
import { agentFilesSandbox } from '../helpers/agent-files-sandbox.ts';
import { type E2eWorld, startE2eWorld } from '../helpers/e2e-world.ts';
import {
  type ScriptedModelServer,
  type ScriptStep,
  startScriptedModelServer,
} from '../helpers/scripted-model-server.ts';

// Claude Code and OpenCode, each the real CLI in a real microVM, reaching a scripted model server
// (Anthropic Messages and OpenAI Responses over SSE) only through the task's proxy. Each edits
// greeting.txt, runs a command that prints every process environment it can read (the CLI's own
// included), and finishes. (Codex has its own file with the no-change and failure cases.)

const MODEL_KEY = `sk-airlock-e2e-${randomBytes(16).toString('hex')}`;
const CHECK_COMMAND =
  "grep -c friendly greeting.txt; for p in /proc/[0-9]*; do tr '\\0' '\\n' < $p/environ 2>/dev/null; done | sort -u";
const FINAL = 'Made the greeting friendlier.';

interface Case {
  agent: 'claude' | 'opencode';
  model: string;
  provider: keyof ModelUpstreams;
  steps: ScriptStep[];
  /** A line of the CLI's own environment that the command must have read (positive control). */
  ownEnv: string;
  /** The header the proxy puts the key in. */
  keyHeader: (headers: Record<string, unknown>) => unknown;
  keyForm: string;
  /** Where the CLI holds its placeholder key: its environment or its configuration file. */
  placeholderIn: 'env' | 'files';
}

const CASES: Case[] = [
  {
    agent: 'claude',
    model: 'claude-sonnet-4-5',
    provider: 'anthropic',
    steps: [
      { type: 'tool_call', name: 'Read', arguments: { file_path: '/work/repo/greeting.txt' } },
      {
        type: 'tool_call',
        name: 'Edit',
        arguments: {
          file_path: '/work/repo/greeting.txt',
          old_string: 'Hello',
          new_string: 'Hello, friendly world',
        },
      },
      {
        type: 'tool_call',
        name: 'Bash',
        arguments: { command: CHECK_COMMAND, description: 'Check the greeting' },
      },
      { type: 'message', text: FINAL },
    ],
    ownEnv: 'ANTHROPIC_BASE_URL=http://10.0.2.100/anthropic',
    keyHeader: (h) => h['x-api-key'],
    keyForm: MODEL_KEY,
    placeholderIn: 'env',
  },
  {
    agent: 'opencode',
    model: 'openai/gpt-5.5',
    provider: 'openai',
    steps: [
      {
        type: 'tool_call',
        name: 'apply_patch',
        arguments: {
          patchText:
            '*** Begin Patch\n*** Update File: greeting.txt\n@@\n-Hello\n+Hello, friendly world\n*** End Patch',
        },
      },
      {
        type: 'tool_call',
        name: 'bash',
        arguments: { command: CHECK_COMMAND, description: 'Check the greeting' },
      },
      { type: 'message', text: FINAL },
    ],
    ownEnv: 'OPENCODE_CONFIG=/home/agent/.config/opencode/opencode.json',
    keyHeader: (h) => h.authorization,
    keyForm: `Bearer ${MODEL_KEY}`,
    placeholderIn: 'files',
  },
];

for (const c of CASES) {
  describe(`agent: ${c.agent}`, () => {
    let model: ScriptedModelServer;
    let world: E2eWorld;
    const scans: string[] = [];

    beforeAll(async () => {
      model = await startScriptedModelServer({ [c.provider]: c.steps });
      world = await startE2eWorld({
        files: {
          'greeting.txt': 'Hello\n',
          '.github/airlock.yml': `agent: ${c.agent}\nmodel: ${c.model}\ntimeout_minutes: 20\nlimits:\n  cpus: 1\n  memory_mib: 1536\n  disk_mib: 1024\n`,
        },
        models: { [c.provider]: { url: model.url, apiKey: MODEL_KEY } },
        wrapSandbox: (real) => agentFilesSandbox(real, (contents) => scans.push(contents)),
      });
    }, 120_000);

    afterAll(async () => {
      await world?.close();
      await model?.close();
    });

    it(
      'edits, runs a command and finishes through the proxy; the change is pushed and the key stays out',
      async () => {
        // Under TCG, OpenCode's own start-up is most of its run, and beside other VM tests it slows
        // several times over. The wait outlasts the task's own timeout (timeout_minutes), so a
        // task that hangs fails with that reason.
        const task: Task = await world.labelIssue('Friendlier greeting', 'Make the greeting friendlier.', {
          timeoutMs: 23 * 60_000,
        });
        expect(task.reason ?? '').toMatch(/^changes pushed/);
        expect(task.state).toBe('succeeded');
        expect(task.result).toMatchObject({ outcome: 'changes_pushed', summary: FINAL });

        const git = (...args: string[]) =>
          execFileSync('git', ['--git-dir', world.gh.state.repos.get('acme/widgets')!.dir, ...args], {
            encoding: 'utf8',
          });
        expect(git('show', `${task.branch}:greeting.txt`)).toBe('Hello, friendly world\n');
        expect(git('log', '-1', '--format=%an <%ae>', task.branch).trim()).toBe(
          'airlock-e2e[bot] <airlock-e2e[bot]@users.noreply.github.com>',
        );
        expect(git('log', '-1', '--format=%B', task.branch)).toContain(
          'Co-authored-by: alice <101+alice@users.noreply.github.com>',
        );

        const record = await world.audit.events(task.id);
        const events = record.filter((e) => e.type === 'agent.event').map((e) => e.data as AgentEvent);
        expect(events[0]).toMatchObject({ kind: 'session' });
        expect(events.filter((e) => e.kind === 'file_edit')).toEqual([
          { kind: 'file_edit', path: 'greeting.txt', change: 'update' },
        ]);
        const command = events.find((e) => e.kind === 'command');
        expect(command).toMatchObject({ kind: 'command', command: CHECK_COMMAND, exitCode: 0 });
        expect(events.some((e) => e.kind === 'usage')).toBe(true);
        expect(events.filter((e) => e.kind === 'message' && e.role === 'assistant').at(-1)).toMatchObject({
          text: FINAL,
        });

        // Every scripted step was served, in order, through the proxy.
        const steps = model.requests.filter((r) => r.step >= 0).map((r) => r.step);
        expect([...new Set(steps)]).toEqual(c.steps.map((_, i) => i));
        // Nothing got out but model traffic. No egress allowlist is configured, so every egress
        // attempt was refused (and audited); Claude Code is configured to make none, while
        // OpenCode tries one package-registry fetch at start-up (its plugin package) and goes on.
        const egress = record.filter((e) => e.type === 'proxy.egress');
        expect(egress.filter((e) => e.data.decision !== 'refused')).toEqual([]);
        if (c.agent === 'claude') expect(egress).toEqual([]);
        expect(record.filter((e) => e.type === 'proxy.refused').map((e) => e.data.path)).toEqual([]);

        // The key never entered the VM. Positive controls first: the command read the CLI's own
        // environment, and the scan read the files the agent changed.
        const envDump = command?.kind === 'command' ? (command.output ?? '') : '';
        const scan = scans.at(-1)!;
        expect(envDump).toContain(c.ownEnv);
        expect(c.placeholderIn === 'env' ? envDump : scan).toContain('airlock-placeholder-key');
        expect(envDump).not.toContain(MODEL_KEY);
        expect(scan).toContain('Hello, friendly world');
        expect(scan).not.toContain(MODEL_KEY);
        for (const request of model.requests) {
          expect(c.keyHeader(request.headers)).toBe(c.keyForm);
          expect(request.body).not.toContain(MODEL_KEY);
        }
        expect(JSON.stringify(record)).not.toContain(MODEL_KEY);
      },
      25 * 60_000,
    );
  });
}
