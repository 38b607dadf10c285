import { z } from 'zod';

/** Longest text kept in one event (messages, command output); the rest is marked as cut. */
export const MAX_EVENT_TEXT_CHARS = 8_000;

/**
 * What an agent did, in one shape for every CLI. Each line an agent prints becomes one or more of
 * these, appended to the task's audit record as `agent.event` while the agent runs. A line no
 * adapter understands is kept whole as `raw`: never dropped, never fatal.
 */
export const AgentEvent = z.discriminatedUnion('kind', [
  z.object({
    kind: z.literal('session'),
    /** The CLI's own session or thread id, for reading its logs. */
    id: z.string(),
    model: z.string().optional(),
  }),
  z.object({
    kind: z.literal('message'),
    /** `thinking` is reasoning the CLI chose to show; `assistant` is what the agent says. */
    role: z.enum(['assistant', 'thinking']),
    text: z.string(),
    /** The agent's closing words (its answer for the run). */
    final: z.boolean().optional(),
  }),
  z.object({
    kind: z.literal('tool_call'),
    tool: z.string(),
    id: z.string().optional(),
    input: z.unknown(),
  }),
  z.object({
    kind: z.literal('tool_result'),
    tool: z.string(),
    id: z.string().optional(),
    ok: z.boolean(),
    output: z.string().optional(),
  }),
  z.object({
    kind: z.literal('command'),
    command: z.string(),
    /** null when the CLI did not report one (killed, timed out). */
    exitCode: z.number().int().nullable(),
    output: z.string().optional(),
  }),
  z.object({
    kind: z.literal('file_edit'),
    path: z.string(),
    change: z.enum(['add', 'update', 'delete', 'move', 'unknown']),
  }),
  z.object({
    kind: z.literal('usage'),
    inputTokens: z.number().int().nonnegative(),
    outputTokens: z.number().int().nonnegative(),
    cachedInputTokens: z.number().int().nonnegative().optional(),
    costUsd: z.number().nonnegative().optional(),
  }),
  z.object({
    kind: z.literal('error'),
    message: z.string(),
  }),
  z.object({
    kind: z.literal('raw'),
    stream: z.enum(['stdout', 'stderr']),
    line: z.string(),
    /** Why the line has no normalized form (not JSON, unknown type, unexpected shape, …). */
    note: z.string().optional(),
  }),
]);
export type AgentEvent = z.infer<typeof AgentEvent>;

/** Caps a text at {@link MAX_EVENT_TEXT_CHARS}, keeping its end (where results and errors are). */
export function clip(text: string, max = MAX_EVENT_TEXT_CHARS): string {
  return text.length <= max ? text : `[… ${text.length - max} chars cut]${text.slice(-max)}`;
}

/** An event for a line that has no normalized form. */
export function rawLine(line: string, note?: string, stream: 'stdout' | 'stderr' = 'stdout'): AgentEvent {
  return { kind: 'raw', stream, line: clip(line), ...(note ? { note } : {}) };
}

/** Parses one JSON line, or says why it is not one. */
function jsonLine(line: string): { ok: true; value: unknown } | { ok: false; note: string } {
  try {
    return { ok: true, value: JSON.parse(line) };
  } catch {
    return { ok: false, note: 'not JSON' };
  }
}

/**
 * Parses one line of a CLI's JSON event stream with the CLI's event schema. A line that is not
 * JSON, has an unknown `type`, or a known type in an unexpected shape comes back as a raw event
 * saying which, never dropped.
 */
export function parseEventLine<T>(
  line: string,
  schema: z.ZodType<T>,
  knownTypes: ReadonlySet<unknown>,
): { ok: true; event: T } | { ok: false; raw: AgentEvent } {
  const json = jsonLine(line);
  if (!json.ok) return { ok: false, raw: rawLine(line, json.note) };
  const parsed = schema.safeParse(json.value);
  if (parsed.success) return { ok: true, event: parsed.data };
  const type = (json.value as { type?: unknown } | null)?.type;
  const note = knownTypes.has(type)
    ? schemaNote(String(type), parsed.error)
    : `unknown event type ${String(type)}`;
  return { ok: false, raw: rawLine(line, note) };
}

/** A short description of a zod failure, for the `note` of a raw line. */
export function schemaNote(type: string, error: z.ZodError): string {
  const first = error.issues[0];
  return `unexpected shape for ${type}: ${first ? `${first.path.join('.') || '(root)'} ${first.message}` : 'invalid'}`;
}
