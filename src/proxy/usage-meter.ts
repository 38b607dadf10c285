import { StringDecoder } from 'node:string_decoder';

/** Model tokens used, as the vendors report them. Input includes cache writes and reads. */
export interface TokenUsage {
  inputTokens: number;
  outputTokens: number;
}

const count = (value: unknown): number =>
  typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : 0;

/**
 * Reads a vendor usage object: Anthropic (`input_tokens`, cache fields, `output_tokens`), OpenAI
 * Responses (`input_tokens`, `output_tokens`) and Chat Completions (`prompt_tokens`,
 * `completion_tokens`). Returns undefined for anything else.
 */
export function usageFromObject(value: unknown): TokenUsage | undefined {
  if (!value || typeof value !== 'object') return undefined;
  const u = value as Record<string, unknown>;
  if (!('input_tokens' in u || 'output_tokens' in u || 'prompt_tokens' in u || 'completion_tokens' in u)) {
    return undefined;
  }
  return {
    inputTokens:
      count(u.input_tokens ?? u.prompt_tokens) +
      count(u.cache_creation_input_tokens) +
      count(u.cache_read_input_tokens),
    outputTokens: count(u.output_tokens ?? u.completion_tokens),
  };
}

/**
 * The usage object carried by one streamed event or JSON body, wherever the vendor puts it:
 * `usage` (Anthropic `message_delta`, Chat Completions final chunk, any non-streamed body),
 * `message.usage` (Anthropic `message_start`), `response.usage` (Responses `response.completed`).
 */
export function usageFromEvent(data: unknown): TokenUsage | undefined {
  if (!data || typeof data !== 'object') return undefined;
  const d = data as Record<string, unknown>;
  const nested = (key: string) =>
    d[key] && typeof d[key] === 'object' ? (d[key] as Record<string, unknown>).usage : undefined;
  return (
    usageFromObject(d.usage) ?? usageFromObject(nested('message')) ?? usageFromObject(nested('response'))
  );
}

/**
 * Usage reported over the life of one response. Vendors report running totals (Anthropic's
 * `message_delta.usage.output_tokens` is cumulative), so each field keeps its maximum and only
 * the growth is passed on, which lets the budget be checked mid-stream.
 */
export function responseUsage(onGrowth: (delta: TokenUsage) => void): {
  observe(usage: TokenUsage): void;
  total(): TokenUsage;
} {
  const seen: TokenUsage = { inputTokens: 0, outputTokens: 0 };
  return {
    observe(usage) {
      const delta = {
        inputTokens: Math.max(0, usage.inputTokens - seen.inputTokens),
        outputTokens: Math.max(0, usage.outputTokens - seen.outputTokens),
      };
      seen.inputTokens += delta.inputTokens;
      seen.outputTokens += delta.outputTokens;
      if (delta.inputTokens || delta.outputTokens) onGrowth(delta);
    },
    total: () => ({ ...seen }),
  };
}

/**
 * An incremental server-sent-events reader: feed it chunks as they pass through, and it calls
 * `onData` with each event's parsed JSON `data` (non-JSON data such as `[DONE]` is skipped).
 */
export function sseDataReader(onData: (data: unknown) => void): (chunk: Buffer) => void {
  const decoder = new StringDecoder('utf8');
  let pending = '';
  let data: string[] = [];
  return (chunk) => {
    pending += decoder.write(chunk);
    let newline = pending.indexOf('\n');
    while (newline >= 0) {
      let line = pending.slice(0, newline);
      pending = pending.slice(newline + 1);
      if (line.endsWith('\r')) line = line.slice(0, -1);
      if (line === '') {
        if (data.length) {
          const text = data.join('\n');
          data = [];
          if (text.startsWith('{')) {
            try {
              onData(JSON.parse(text));
            } catch {
              // Not JSON after all: nothing to count in it.
            }
          }
        }
      } else if (line.startsWith('data:')) {
        data.push(line.slice(line.charAt(5) === ' ' ? 6 : 5));
      }
      newline = pending.indexOf('\n');
    }
  };
}
