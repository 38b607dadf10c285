import path from 'node:path';
import { z } from 'zod';
import { type AgentAdapter, type AgentStreamParser, PLACEHOLDER_API_KEY } from './agent-adapter.ts';
import { type AgentEvent, clip, parseEventLine, rawLine, schemaNote } from './agent-event.ts';

/** The Claude Code binary the image installs (vm-images/build.sh: `@anthropic-ai/claude-code`). */
const CLAUDE_BIN = '/opt/agents/node_modules/.bin/claude';

/** Claude Code in print mode, streaming JSON events; permissions bypassed (the VM is the boundary). */
export const claudeAdapter: AgentAdapter = {
  name: 'claude',
  npmPackage: '@anthropic-ai/claude-code',
  stderrIsOutput: false,
  invocation(input) {
    return {
      argv: [
        CLAUDE_BIN,
        '-p',
        '--output-format',
        'stream-json',
        '--verbose',
        '--dangerously-skip-permissions',
        ...(input.model ? ['--model', input.model] : []),
      ],
      env: {
        // The SDK appends /v1/messages; the proxy forwards /anthropic/v1/messages.
        ANTHROPIC_BASE_URL: `${input.proxyUrl}/anthropic`,
        ANTHROPIC_API_KEY: PLACEHOLDER_API_KEY,
        // Nothing but the model API is reachable; don't let the CLI try.
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
        DISABLE_TELEMETRY: '1',
        DISABLE_ERROR_REPORTING: '1',
        DISABLE_AUTOUPDATER: '1',
      },
      dirs: [],
      files: [],
      stdin: input.prompt,
    };
  },
  parser: (input) => claudeStreamParser(input.repoDir),
};

const Block = z.discriminatedUnion('type', [
  z.object({ type: z.literal('text'), text: z.string() }),
  z.object({ type: z.literal('thinking'), thinking: z.string() }),
  z.object({ type: z.literal('redacted_thinking') }),
  z.object({ type: z.literal('tool_use'), id: z.string(), name: z.string(), input: z.unknown() }),
  z.object({
    type: z.literal('tool_result'),
    tool_use_id: z.string(),
    content: z
      .union([z.string(), z.array(z.object({ type: z.string(), text: z.string().optional() }))])
      .optional(),
    is_error: z.boolean().optional(),
  }),
]);

const ClaudeEvent = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('system'),
    subtype: z.string(),
    session_id: z.string().optional(),
    model: z.string().optional(),
  }),
  z.object({
    type: z.literal('assistant'),
    message: z.object({ content: z.array(z.unknown()) }),
  }),
  z.object({
    type: z.literal('user'),
    message: z.object({ content: z.union([z.string(), z.array(z.unknown())]) }),
    tool_use_result: z.unknown().optional(),
  }),
  z.object({
    type: z.literal('result'),
    subtype: z.string(),
    is_error: z.boolean(),
    result: z.string().optional(),
    total_cost_usd: z.number().optional(),
    usage: z
      .object({
        input_tokens: z.number(),
        output_tokens: z.number(),
        cache_creation_input_tokens: z.number().nullish(),
        cache_read_input_tokens: z.number().nullish(),
      })
      .optional(),
  }),
]);
const EVENT_TYPES: ReadonlySet<unknown> = new Set(['system', 'assistant', 'user', 'result']);

/** Tools whose success means a file changed, and the input field naming it. */
const EDIT_TOOLS: Record<string, string> = {
  Edit: 'file_path',
  MultiEdit: 'file_path',
  Write: 'file_path',
  NotebookEdit: 'notebook_path',
};

/** Reads Claude Code's `--output-format stream-json --verbose` lines into normalized events. */
export function claudeStreamParser(repoDir: string): AgentStreamParser {
  const calls = new Map<string, { name: string; input: Record<string, unknown> }>();
  const relative = (file: string) =>
    file.startsWith(`${repoDir}/`) ? path.posix.relative(repoDir, file) : file;

  const toolResult = (
    block: Extract<z.infer<typeof Block>, { type: 'tool_result' }>,
    detail: unknown,
  ): AgentEvent => {
    const call = calls.get(block.tool_use_id);
    const text =
      typeof block.content === 'string'
        ? block.content
        : (block.content ?? []).map((c) => c.text ?? '').join('\n');
    const ok = block.is_error !== true;
    const tool = call?.name ?? 'unknown';
    if (call && tool === 'Bash') {
      // Claude reports a failed command as an error result that starts with its exit code.
      const exit = /^Exit code (\d+)/.exec(text);
      return {
        kind: 'command',
        command: String(call.input.command ?? ''),
        exitCode: ok ? 0 : exit ? Number(exit[1]) : null,
        output: clip(text),
      };
    }
    const field = EDIT_TOOLS[tool];
    const file = field ? call?.input[field] : undefined;
    if (ok && typeof file === 'string') {
      const created = (detail as { type?: unknown } | null)?.type === 'create';
      return { kind: 'file_edit', path: relative(file), change: created ? 'add' : 'update' };
    }
    return { kind: 'tool_result', tool, id: block.tool_use_id, ok, output: clip(text) };
  };

  const blocks = (content: unknown[], detail: unknown, line: string): AgentEvent[] => {
    const out: AgentEvent[] = [];
    for (const value of content) {
      const parsed = Block.safeParse(value);
      if (!parsed.success) {
        out.push(rawLine(line, schemaNote('content block', parsed.error)));
        continue;
      }
      const block = parsed.data;
      switch (block.type) {
        case 'text':
          out.push({ kind: 'message', role: 'assistant', text: clip(block.text) });
          break;
        case 'thinking':
          out.push({ kind: 'message', role: 'thinking', text: clip(block.thinking) });
          break;
        case 'redacted_thinking':
          out.push(rawLine(line, 'redacted thinking'));
          break;
        case 'tool_use': {
          const input = (block.input && typeof block.input === 'object' ? block.input : {}) as Record<
            string,
            unknown
          >;
          calls.set(block.id, { name: block.name, input });
          out.push({ kind: 'tool_call', tool: block.name, id: block.id, input: block.input });
          break;
        }
        case 'tool_result':
          out.push(toolResult(block, detail));
          break;
      }
    }
    return out.length ? out : [rawLine(line, 'no content')];
  };

  return {
    line(line) {
      const parsed = parseEventLine(line, ClaudeEvent, EVENT_TYPES);
      if (!parsed.ok) return [parsed.raw];
      const event = parsed.event;
      switch (event.type) {
        case 'system':
          if (event.subtype === 'init' && event.session_id) {
            return [
              { kind: 'session', id: event.session_id, ...(event.model ? { model: event.model } : {}) },
            ];
          }
          return [rawLine(line, `system ${event.subtype}`)];
        case 'assistant':
          return blocks(event.message.content, undefined, line);
        case 'user':
          return typeof event.message.content === 'string'
            ? [rawLine(line, 'user text')]
            : blocks(event.message.content, event.tool_use_result, line);
        case 'result': {
          const out: AgentEvent[] = [];
          if (event.usage) {
            const cacheRead = event.usage.cache_read_input_tokens ?? 0;
            out.push({
              kind: 'usage',
              inputTokens:
                event.usage.input_tokens + (event.usage.cache_creation_input_tokens ?? 0) + cacheRead,
              outputTokens: event.usage.output_tokens,
              cachedInputTokens: cacheRead,
              ...(event.total_cost_usd !== undefined ? { costUsd: event.total_cost_usd } : {}),
            });
          }
          if (event.is_error) out.push({ kind: 'error', message: clip(event.result ?? event.subtype) });
          else out.push({ kind: 'message', role: 'assistant', text: clip(event.result ?? ''), final: true });
          return out;
        }
      }
    },
  };
}
