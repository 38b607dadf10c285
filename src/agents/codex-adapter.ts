import path from 'node:path';
import { z } from 'zod';
import {
  type AgentAdapter,
  type AgentRunInput,
  type AgentStreamParser,
  PLACEHOLDER_API_KEY,
} from './agent-adapter.ts';
import { type AgentEvent, clip, parseEventLine, rawLine, schemaNote } from './agent-event.ts';

/**
 * The native Codex binary the image installs (vm-images/build.sh: `@openai/codex` in /opt/agents).
 * Started directly: the npm wrapper would cost a Node start-up, seconds under TCG.
 */
const CODEX_DIR = '/opt/agents/node_modules/@openai/codex-linux-x64/vendor/x86_64-unknown-linux-musl';

/** Codex's configuration: the proxy as its only model provider, and nothing that phones home. */
export function codexConfigToml(input: Pick<AgentRunInput, 'proxyUrl' | 'model'>): string {
  return [
    'model_provider = "airlock"',
    ...(input.model ? [`model = ${JSON.stringify(input.model)}`] : []),
    'check_for_update_on_startup = false',
    'web_search = "disabled"',
    '',
    '[analytics]',
    'enabled = false',
    '',
    '[feedback]',
    'enabled = false',
    '',
    '[history]',
    'persistence = "none"',
    '',
    // Plugin and app discovery reach github.com and chatgpt.com at start-up (refused by the
    // egress policy anyway): off, so the record shows only what the agent itself tried.
    '[features]',
    'plugins = false',
    'remote_plugin = false',
    'apps = false',
    '',
    '[model_providers.airlock]',
    'name = "airlock credential proxy"',
    `base_url = ${JSON.stringify(`${input.proxyUrl}/openai/v1`)}`,
    'env_key = "OPENAI_API_KEY"',
    'wire_api = "responses"',
    '',
  ].join('\n');
}

/** OpenAI Codex CLI: `codex exec --json`, its own sandbox off (the microVM is the sandbox). */
export const codexAdapter: AgentAdapter = {
  name: 'codex',
  npmPackage: '@openai/codex',
  stderrIsOutput: false,
  invocation(input) {
    const codexHome = path.posix.join(input.homeDir, '.codex');
    return {
      argv: [
        `${CODEX_DIR}/bin/codex`,
        'exec',
        '--json',
        '--strict-config',
        '--ephemeral',
        '--dangerously-bypass-approvals-and-sandbox',
        '--skip-git-repo-check',
        '--color',
        'never',
        '-C',
        input.repoDir,
        '-',
      ],
      env: {
        CODEX_HOME: codexHome,
        OPENAI_API_KEY: PLACEHOLDER_API_KEY,
        // ripgrep ships beside the binary; the npm wrapper would add it to PATH.
        PATH: `${CODEX_DIR}/codex-path:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
      },
      dirs: [codexHome],
      files: [{ path: path.posix.join(codexHome, 'config.toml'), content: codexConfigToml(input) }],
      stdin: input.prompt,
    };
  },
  parser: (input) => codexStreamParser(input.repoDir),
};

const Usage = z.object({
  input_tokens: z.number(),
  cached_input_tokens: z.number().optional(),
  output_tokens: z.number(),
});

const Item = z.discriminatedUnion('type', [
  z.object({ type: z.literal('agent_message'), id: z.string(), text: z.string() }),
  z.object({ type: z.literal('reasoning'), id: z.string(), text: z.string() }),
  z.object({
    type: z.literal('command_execution'),
    id: z.string(),
    command: z.string(),
    aggregated_output: z.string().optional(),
    exit_code: z.number().int().nullable().optional(),
    status: z.string(),
  }),
  z.object({
    type: z.literal('file_change'),
    id: z.string(),
    changes: z.array(z.object({ path: z.string(), kind: z.string() })),
    status: z.string(),
  }),
  z.object({
    type: z.literal('mcp_tool_call'),
    id: z.string(),
    server: z.string(),
    tool: z.string(),
    arguments: z.unknown().optional(),
    status: z.string(),
    error: z.object({ message: z.string() }).nullable().optional(),
  }),
  z.object({ type: z.literal('web_search'), id: z.string(), query: z.string().optional() }),
  z.object({ type: z.literal('error'), id: z.string(), message: z.string() }),
]);

const CodexEvent = z.discriminatedUnion('type', [
  z.object({ type: z.literal('thread.started'), thread_id: z.string() }),
  z.object({ type: z.literal('turn.completed'), usage: Usage }),
  z.object({ type: z.literal('turn.failed'), error: z.object({ message: z.string() }) }),
  z.object({ type: z.literal('error'), message: z.string() }),
  z.object({ type: z.literal('turn.started') }),
  z.object({ type: z.enum(['item.started', 'item.updated', 'item.completed']), item: z.unknown() }),
]);
const EVENT_TYPES: ReadonlySet<unknown> = new Set([
  'thread.started',
  'turn.started',
  'turn.completed',
  'turn.failed',
  'error',
  'item.started',
  'item.updated',
  'item.completed',
]);
const ITEM_TYPES: ReadonlySet<unknown> = new Set(Item.options.map((o) => o.shape.type.value));

const FILE_CHANGE_KINDS = new Set(['add', 'update', 'delete', 'move']);

/** Reads `codex exec --json` (one ThreadEvent per line) into normalized events. */
export function codexStreamParser(repoDir: string): AgentStreamParser {
  const relative = (file: string) =>
    file.startsWith(`${repoDir}/`) ? path.posix.relative(repoDir, file) : file;

  const item = (phase: string, value: unknown, line: string): AgentEvent[] => {
    const parsed = Item.safeParse(value);
    if (!parsed.success) {
      const type = (value as { type?: unknown } | null)?.type;
      return [
        rawLine(
          line,
          ITEM_TYPES.has(type)
            ? schemaNote(`${phase} item`, parsed.error)
            : `unknown item type ${String(type)}`,
        ),
      ];
    }
    const it = parsed.data;
    const started = phase === 'item.started';
    const completed = phase === 'item.completed';
    switch (it.type) {
      case 'agent_message':
        return completed ? [{ kind: 'message', role: 'assistant', text: clip(it.text) }] : [rawLine(line)];
      case 'reasoning':
        return completed ? [{ kind: 'message', role: 'thinking', text: clip(it.text) }] : [rawLine(line)];
      case 'command_execution':
        if (started) return [{ kind: 'tool_call', tool: 'shell', id: it.id, input: { command: it.command } }];
        if (completed) {
          return [
            {
              kind: 'command',
              command: it.command,
              exitCode: it.exit_code ?? null,
              output: clip(it.aggregated_output ?? ''),
            },
          ];
        }
        return [rawLine(line)];
      case 'file_change':
        if (started) return [{ kind: 'tool_call', tool: 'apply_patch', id: it.id, input: it.changes }];
        if (completed && it.status === 'completed') {
          return it.changes.map((c) => ({
            kind: 'file_edit' as const,
            path: relative(c.path),
            change: FILE_CHANGE_KINDS.has(c.kind) ? (c.kind as 'add') : ('unknown' as const),
          }));
        }
        if (completed)
          return [{ kind: 'tool_result', tool: 'apply_patch', id: it.id, ok: false, output: it.status }];
        return [rawLine(line)];
      case 'mcp_tool_call': {
        const tool = `${it.server}.${it.tool}`;
        if (started) return [{ kind: 'tool_call', tool, id: it.id, input: it.arguments ?? null }];
        if (completed) {
          return [
            {
              kind: 'tool_result',
              tool,
              id: it.id,
              ok: it.status === 'completed',
              ...(it.error ? { output: it.error.message } : {}),
            },
          ];
        }
        return [rawLine(line)];
      }
      case 'web_search':
        return started || completed
          ? [{ kind: 'tool_call', tool: 'web_search', id: it.id, input: { query: it.query } }]
          : [rawLine(line)];
      case 'error':
        return [{ kind: 'error', message: it.message }];
    }
  };

  return {
    line(line: string): AgentEvent[] {
      const parsed = parseEventLine(line, CodexEvent, EVENT_TYPES);
      if (!parsed.ok) return [parsed.raw];
      const event = parsed.event;
      switch (event.type) {
        case 'thread.started':
          return [{ kind: 'session', id: event.thread_id }];
        case 'turn.completed':
          return [
            {
              kind: 'usage',
              inputTokens: event.usage.input_tokens,
              outputTokens: event.usage.output_tokens,
              ...(event.usage.cached_input_tokens !== undefined
                ? { cachedInputTokens: event.usage.cached_input_tokens }
                : {}),
            },
          ];
        case 'turn.failed':
          return [{ kind: 'error', message: event.error.message }];
        case 'error':
          return [{ kind: 'error', message: event.message }];
        case 'turn.started':
          return [rawLine(line, 'turn started')];
        default:
          return item(event.type, event.item, line);
      }
    },
  };
}
