import path from 'node:path';
import { z } from 'zod';
import { AgentConfigError } from '../errors.ts';
import {
  type AgentAdapter,
  type AgentRunInput,
  type AgentStreamParser,
  PLACEHOLDER_API_KEY,
} from './agent-adapter.ts';
import { type AgentEvent, clip, parseEventLine, rawLine } from './agent-event.ts';

/** The OpenCode binary the image installs (vm-images/build.sh: `opencode-ai`). */
const OPENCODE_BIN = '/opt/agents/node_modules/opencode-ai/bin/opencode.exe';

/** OpenCode's configuration: both providers through the proxy, nothing shared or updated. */
export function opencodeConfig(input: Pick<AgentRunInput, 'proxyUrl' | 'model'>): string {
  return `${JSON.stringify(
    {
      $schema: 'https://opencode.ai/config.json',
      autoupdate: false,
      share: 'disabled',
      provider: {
        anthropic: { options: { baseURL: `${input.proxyUrl}/anthropic/v1`, apiKey: PLACEHOLDER_API_KEY } },
        openai: { options: { baseURL: `${input.proxyUrl}/openai/v1`, apiKey: PLACEHOLDER_API_KEY } },
      },
      ...(input.model ? { model: input.model } : {}),
    },
    null,
    2,
  )}\n`;
}

/** OpenCode's non-interactive `opencode run --format json`, permissions auto-approved. */
export const opencodeAdapter: AgentAdapter = {
  name: 'opencode',
  npmPackage: 'opencode-ai',
  stderrIsOutput: false,
  invocation(input) {
    if (input.model && !input.model.includes('/')) {
      throw new AgentConfigError(`model ${input.model} is not in OpenCode's provider/model form`, {
        hint: 'write it as anthropic/<model> or openai/<model> in .github/airlock.yml',
      });
    }
    const config = path.posix.join(input.homeDir, '.config', 'opencode', 'opencode.json');
    return {
      argv: [OPENCODE_BIN, 'run', '--format', 'json', '--dangerously-skip-permissions'],
      env: {
        OPENCODE_CONFIG: config,
        OPENCODE_DISABLE_AUTOUPDATE: '1',
        OPENCODE_DISABLE_MODELS_FETCH: '1',
        OPENCODE_DISABLE_LSP_DOWNLOAD: '1',
        OPENCODE_DISABLE_SHARE: '1',
        // Its default plugins are fetched from the npm registry at start-up; none is needed here.
        OPENCODE_DISABLE_DEFAULT_PLUGINS: '1',
      },
      dirs: [path.posix.dirname(config)],
      files: [{ path: config, content: opencodeConfig(input) }],
      stdin: input.prompt,
    };
  },
  parser: (input) => opencodeStreamParser(input.repoDir),
};

const ToolState = z.discriminatedUnion('status', [
  z.object({
    status: z.literal('completed'),
    input: z.record(z.string(), z.unknown()),
    output: z.string(),
    metadata: z.record(z.string(), z.unknown()).optional(),
  }),
  z.object({ status: z.literal('error'), input: z.record(z.string(), z.unknown()), error: z.string() }),
]);

const OpencodeEvent = z.discriminatedUnion('type', [
  z.object({ type: z.literal('step_start'), sessionID: z.string() }),
  z.object({
    type: z.literal('step_finish'),
    part: z.object({
      reason: z.string().optional(),
      cost: z.number().optional(),
      tokens: z
        .object({
          input: z.number(),
          output: z.number(),
          reasoning: z.number().optional(),
          cache: z.object({ read: z.number(), write: z.number() }).optional(),
        })
        .optional(),
    }),
  }),
  z.object({ type: z.literal('text'), part: z.object({ text: z.string() }) }),
  z.object({ type: z.literal('reasoning'), part: z.object({ text: z.string() }) }),
  z.object({
    type: z.literal('tool_use'),
    part: z.object({ tool: z.string(), callID: z.string(), state: ToolState }),
  }),
  z.object({
    type: z.literal('error'),
    error: z.object({
      name: z.string(),
      data: z.object({ message: z.string().optional() }).passthrough().optional(),
    }),
  }),
]);
const EVENT_TYPES: ReadonlySet<unknown> = new Set([
  'step_start',
  'step_finish',
  'text',
  'reasoning',
  'tool_use',
  'error',
]);

const FileChange = z.object({ filePath: z.string(), type: z.string().optional() });
const CHANGES = new Set(['add', 'update', 'delete', 'move']);
const EDIT_TOOLS = new Set(['edit', 'write', 'multiedit']);

/** Reads `opencode run --format json` lines into normalized events. */
export function opencodeStreamParser(repoDir: string): AgentStreamParser {
  let session = '';
  const relative = (file: string) =>
    file.startsWith(`${repoDir}/`) ? path.posix.relative(repoDir, file) : file;

  const tool = (part: { tool: string; callID: string; state: z.infer<typeof ToolState> }): AgentEvent[] => {
    const { state } = part;
    const call: AgentEvent = { kind: 'tool_call', tool: part.tool, id: part.callID, input: state.input };
    if (state.status === 'error')
      return [
        call,
        { kind: 'tool_result', tool: part.tool, id: part.callID, ok: false, output: clip(state.error) },
      ];
    if (part.tool === 'bash') {
      const exit = state.metadata?.exit;
      return [
        call,
        {
          kind: 'command',
          command: String(state.input.command ?? ''),
          exitCode: typeof exit === 'number' ? exit : null,
          output: clip(state.output),
        },
      ];
    }
    const files = z.array(FileChange).safeParse(state.metadata?.files);
    if (files.success && files.data.length) {
      return [
        call,
        ...files.data.map((f) => ({
          kind: 'file_edit' as const,
          path: relative(f.filePath),
          change: CHANGES.has(f.type ?? '') ? (f.type as 'add') : ('unknown' as const),
        })),
      ];
    }
    const file = state.input.filePath;
    if (EDIT_TOOLS.has(part.tool) && typeof file === 'string')
      return [call, { kind: 'file_edit', path: relative(file), change: 'update' }];
    return [
      call,
      { kind: 'tool_result', tool: part.tool, id: part.callID, ok: true, output: clip(state.output) },
    ];
  };

  return {
    line(line) {
      const parsed = parseEventLine(line, OpencodeEvent, EVENT_TYPES);
      if (!parsed.ok) return [parsed.raw];
      const event = parsed.event;
      switch (event.type) {
        case 'step_start':
          if (event.sessionID === session) return [rawLine(line, 'step started')];
          session = event.sessionID;
          return [{ kind: 'session', id: session }];
        case 'step_finish': {
          const t = event.part.tokens;
          if (!t) return [rawLine(line, 'step finished')];
          return [
            {
              kind: 'usage',
              inputTokens: t.input + (t.cache?.read ?? 0) + (t.cache?.write ?? 0),
              outputTokens: t.output + (t.reasoning ?? 0),
              cachedInputTokens: t.cache?.read ?? 0,
              ...(event.part.cost !== undefined ? { costUsd: event.part.cost } : {}),
            },
          ];
        }
        case 'text':
          return [{ kind: 'message', role: 'assistant', text: clip(event.part.text) }];
        case 'reasoning':
          return [{ kind: 'message', role: 'thinking', text: clip(event.part.text) }];
        case 'tool_use':
          return tool(event.part);
        case 'error':
          return [{ kind: 'error', message: clip(event.error.data?.message ?? event.error.name) }];
      }
    },
  };
}
