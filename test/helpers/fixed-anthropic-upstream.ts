import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

/** An Anthropic Messages upstream that answers every request with one short, non-streamed message. */
export interface FixedAnthropicUpstream {
  url: string;
  /** The `x-api-key` each request arrived with, in order. */
  keys: string[];
  close(): void;
}

/** Starts it on loopback; `usage` is what each answer reports spending. */
export async function startFixedAnthropicUpstream(usage: {
  input_tokens: number;
  output_tokens: number;
}): Promise<FixedAnthropicUpstream> {
  const keys: string[] = [];
  const server = createServer((req, res) => {
    keys.push(String(req.headers['x-api-key']));
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          id: 'msg_1',
          type: 'message',
          role: 'assistant',
          model: 'claude-test',
          content: [{ type: 'text', text: 'hello' }],
          stop_reason: 'end_turn',
          usage,
        }),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    keys,
    close: () => server.close(),
  };
}
