import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { AgentStreamParser } from '../../src/agents/agent-adapter.ts';
import { AgentEvent } from '../../src/agents/agent-event.ts';
import { claudeStreamParser } from '../../src/agents/claude-adapter.ts';
import { codexStreamParser } from '../../src/agents/codex-adapter.ts';
import { opencodeStreamParser } from '../../src/agents/opencode-adapter.ts';

// The fixtures are the CLIs' real output (fixtures/agents/README.md says how they were recorded).
function parseFixture(parser: AgentStreamParser, name: string): { lines: string[]; events: AgentEvent[] } {
  const lines = readFileSync(new URL(`../../fixtures/agents/${name}`, import.meta.url), 'utf8')
    .split('\n')
    .filter(Boolean);
  const events = lines.flatMap((line) => {
    const out = parser.line(line);
    expect(out.length, `every line gives at least one event: ${line.slice(0, 80)}`).toBeGreaterThan(0);
    return out;
  });
  for (const event of events) AgentEvent.parse(event);
  return { lines, events };
}

const withoutRaw = (events: AgentEvent[]) => events.filter((e) => e.kind !== 'raw');

describe('codex exec --json', () => {
  it('reads a run that patches a file and runs a command', () => {
    const { events } = parseFixture(codexStreamParser('/work/repo'), 'codex-edit-run.jsonl');
    expect(withoutRaw(events)).toEqual([
      { kind: 'session', id: expect.any(String) },
      {
        kind: 'tool_call',
        tool: 'apply_patch',
        id: 'item_0',
        input: [{ path: '/work/repo/a.txt', kind: 'update' }],
      },
      { kind: 'file_edit', path: 'a.txt', change: 'update' },
      {
        kind: 'tool_call',
        tool: 'shell',
        id: 'item_1',
        input: { command: "/bin/bash -lc 'cat a.txt && echo ok'" },
      },
      {
        kind: 'command',
        command: "/bin/bash -lc 'cat a.txt && echo ok'",
        exitCode: 0,
        output: 'hello there\nok\n',
      },
      { kind: 'message', role: 'assistant', text: 'Changed a.txt.' },
      { kind: 'usage', inputTokens: 300, outputTokens: 60, cachedInputTokens: 0 },
    ]);
    expect(events.filter((e) => e.kind === 'raw').map((e) => e.kind === 'raw' && e.note)).toEqual([
      'turn started',
    ]);
  });

  it('reports a refused model call as errors', () => {
    const { events } = parseFixture(codexStreamParser('/work/repo'), 'codex-refused.jsonl');
    const errors = events.filter((e) => e.kind === 'error');
    expect(errors).toHaveLength(3);
    expect(errors.at(-1)).toMatchObject({ message: expect.stringContaining('403 Forbidden: airlock:') });
  });

  it('keeps unknown events, unknown items, odd shapes and non-JSON lines raw', () => {
    const parser = codexStreamParser('/work/repo');
    expect(parser.line('{"type":"thread.forked","thread_id":"x"}')).toEqual([
      {
        kind: 'raw',
        stream: 'stdout',
        line: '{"type":"thread.forked","thread_id":"x"}',
        note: 'unknown event type thread.forked',
      },
    ]);
    expect(parser.line('{"type":"item.completed","item":{"id":"i","type":"hologram"}}')[0]).toMatchObject({
      kind: 'raw',
      note: 'unknown item type hologram',
    });
    expect(parser.line('{"type":"turn.completed","usage":"lots"}')[0]).toMatchObject({
      kind: 'raw',
      note: expect.stringContaining('unexpected shape for turn.completed'),
    });
    expect(parser.line('Reading additional input from stdin...')).toEqual([
      { kind: 'raw', stream: 'stdout', line: 'Reading additional input from stdin...', note: 'not JSON' },
    ]);
  });
});

describe('claude -p --output-format stream-json --verbose', () => {
  it('reads a run that reads, edits and creates files and runs a failing command', () => {
    const { events } = parseFixture(claudeStreamParser('/work/repo'), 'claude-edit-run.jsonl');
    expect(withoutRaw(events)).toEqual([
      { kind: 'session', id: expect.any(String), model: 'claude-sonnet-4-5' },
      { kind: 'tool_call', tool: 'Read', id: 'toolu_0001', input: { file_path: '/work/repo/a.txt' } },
      { kind: 'tool_result', tool: 'Read', id: 'toolu_0001', ok: true, output: '1\thi\n2\t' },
      {
        kind: 'tool_call',
        tool: 'Edit',
        id: 'toolu_0002',
        input: { file_path: '/work/repo/a.txt', old_string: 'hi', new_string: 'hello', replace_all: false },
      },
      { kind: 'file_edit', path: 'a.txt', change: 'update' },
      {
        kind: 'tool_call',
        tool: 'Write',
        id: 'toolu_0003',
        input: { file_path: '/work/repo/notes.txt', content: 'scripted note\n' },
      },
      { kind: 'file_edit', path: 'notes.txt', change: 'add' },
      {
        kind: 'tool_call',
        tool: 'Bash',
        id: 'toolu_0004',
        input: { command: 'cat notes.txt && exit 3', description: 'Show the note' },
      },
      {
        kind: 'command',
        command: 'cat notes.txt && exit 3',
        exitCode: 3,
        output: 'Exit code 3\nscripted note',
      },
      { kind: 'message', role: 'assistant', text: 'Wrote notes.txt; the check exited 3 as expected.' },
      {
        kind: 'usage',
        inputTokens: 600,
        outputTokens: 150,
        cachedInputTokens: 0,
        costUsd: expect.any(Number),
      },
      {
        kind: 'message',
        role: 'assistant',
        text: 'Wrote notes.txt; the check exited 3 as expected.',
        final: true,
      },
    ]);
  });

  it('reports a refused model call (the proxy over budget) as an error result', () => {
    const { events } = parseFixture(claudeStreamParser('/work/repo'), 'claude-refused.jsonl');
    expect(events.at(-1)).toEqual({
      kind: 'error',
      message: expect.stringContaining('API Error: 403 airlock: this task used its model budget'),
    });
  });

  it('keeps API retries raw with their subtype', () => {
    const { events } = parseFixture(claudeStreamParser('/work/repo'), 'claude-api-retry.jsonl');
    expect(events[0]).toMatchObject({ kind: 'session' });
    expect(events.slice(1).map((e) => e.kind === 'raw' && e.note)).toEqual(
      Array(events.length - 1).fill('system api_retry'),
    );
  });
});

describe('opencode run --format json', () => {
  it('reads a run that applies a patch and runs a failing command', () => {
    const { events } = parseFixture(opencodeStreamParser('/work/repo'), 'opencode-edit-run.jsonl');
    const kinds = withoutRaw(events).map((e) => e.kind);
    expect(kinds[0]).toBe('session');
    expect(events.filter((e) => e.kind === 'file_edit')).toEqual([
      { kind: 'file_edit', path: 'notes.txt', change: 'add' },
      { kind: 'file_edit', path: 'a.txt', change: 'update' },
    ]);
    expect(events.filter((e) => e.kind === 'command')).toEqual([
      { kind: 'command', command: 'cat notes.txt && exit 3', exitCode: 3, output: 'scripted note\n' },
    ]);
    expect(events.filter((e) => e.kind === 'usage')).toHaveLength(3);
    expect(events.filter((e) => e.kind === 'message')).toEqual([
      { kind: 'message', role: 'assistant', text: 'Wrote notes.txt; the check exited 3 as expected.' },
    ]);
  });

  it('reports a refused model call as an error', () => {
    const { events } = parseFixture(opencodeStreamParser('/work/repo'), 'opencode-refused.jsonl');
    expect(events).toEqual([
      {
        kind: 'error',
        message: 'airlock: this task used its model budget of 1000 tokens; no further model calls',
      },
    ]);
  });
});
