import { describe, expect, it } from 'vitest';
import { responseUsage, sseDataReader, usageFromEvent } from '../../src/proxy/usage-meter.ts';

describe('usage meter', () => {
  it('reads SSE events split anywhere across chunks, CRLF or LF', () => {
    const events: unknown[] = [];
    const feed = sseDataReader((d) => events.push(d));
    const text =
      'event: message_start\r\ndata: {"type":"message_start","message":{"usage":{"input_tokens":3}}}\r\n\r\n' +
      ': comment\n\ndata: {"a":\ndata: 1}\n\ndata: [DONE]\n\n';
    const bytes = Buffer.from(text);
    for (let i = 0; i < bytes.length; i += 7) feed(bytes.subarray(i, i + 7));
    expect(events).toEqual([{ type: 'message_start', message: { usage: { input_tokens: 3 } } }, { a: 1 }]);
  });

  it('finds usage wherever each vendor puts it', () => {
    expect(
      usageFromEvent({
        message: {
          usage: {
            input_tokens: 5,
            cache_creation_input_tokens: 2,
            cache_read_input_tokens: 1,
            output_tokens: 1,
          },
        },
      }),
    ).toEqual({
      inputTokens: 8,
      outputTokens: 1,
    });
    expect(usageFromEvent({ type: 'message_delta', usage: { output_tokens: 9 } })).toEqual({
      inputTokens: 0,
      outputTokens: 9,
    });
    expect(usageFromEvent({ response: { usage: { input_tokens: 4, output_tokens: 6 } } })).toEqual({
      inputTokens: 4,
      outputTokens: 6,
    });
    expect(usageFromEvent({ usage: { prompt_tokens: 7, completion_tokens: 3 } })).toEqual({
      inputTokens: 7,
      outputTokens: 3,
    });
    expect(usageFromEvent({ input_tokens: 5000 })).toBeUndefined();
    expect(usageFromEvent({ usage: null })).toBeUndefined();
  });

  it('counts running totals once', () => {
    const growth: number[] = [];
    const meter = responseUsage((d) => growth.push(d.inputTokens + d.outputTokens));
    meter.observe({ inputTokens: 100, outputTokens: 1 });
    meter.observe({ inputTokens: 0, outputTokens: 10 });
    meter.observe({ inputTokens: 100, outputTokens: 25 });
    expect(meter.total()).toEqual({ inputTokens: 100, outputTokens: 25 });
    expect(growth).toEqual([101, 9, 15]);
  });
});
