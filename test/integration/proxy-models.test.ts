import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { TaskCredential } from '../../src/github/task-token.ts';
import { startTaskProxy, type TaskProxy } from '../../src/proxy/task-proxy.ts';
import type { TokenUsage } from '../../src/proxy/usage-meter.ts';
import { memoryLogger } from '../helpers/memory-logger.ts';
import { RecordingAudit } from '../helpers/recording-audit.ts';

const ANTHROPIC_KEY = 'sk-ant-real-key-0123456789abcdef';
const OPENAI_KEY = 'sk-real-openai-key-0123456789abcdef';

interface Seen {
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
}

/** A credential for tests that never touch git. */
const noGit: TaskCredential = {
  token: async () => {
    throw new Error('this test does not use git');
  },
  revoke: async () => {},
};

let upstream: Server;
let upstreamUrl: string;
let seen: Seen[];
let script: (req: IncomingMessage, res: ServerResponse, body: string) => Promise<void> | void;
let proxy: TaskProxy | undefined;
let audit: RecordingAudit;
let exceeded: TokenUsage[];

const sse = (event: string, data: unknown) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;

beforeEach(async () => {
  seen = [];
  audit = new RecordingAudit();
  exceeded = [];
  upstream = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString();
    seen.push({ path: req.url ?? '', headers: req.headers, body });
    await script(req, res, body);
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
});

afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
  upstream.closeAllConnections();
  await new Promise<void>((resolve) => upstream.close(() => resolve()));
});

let logLines: string[] = [];

async function start(budgetTokens = 1_000_000): Promise<string> {
  const { log, lines } = memoryLogger();
  logLines = lines;
  proxy = await startTaskProxy({
    taskId: 't1',
    repository: { owner: 'acme', name: 'widgets' },
    branch: 'airlock/task-1',
    listen: { tcp: true },
    gitUrl: () => 'http://127.0.0.1:1/unused.git',
    credential: noGit,
    models: {
      anthropic: { url: upstreamUrl, apiKey: ANTHROPIC_KEY },
      openai: { url: upstreamUrl, apiKey: OPENAI_KEY },
    },
    egressAllow: [],
    budgetTokens,
    onBudgetExceeded: (usage) => exceeded.push(usage),
    audit,
    log,
  });
  return proxy.address;
}

const json = (res: ServerResponse, body: unknown): void => {
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
};

describe('model APIs through the task proxy', () => {
  it('streams Anthropic SSE as it arrives, with the real key in place of the client credentials', async () => {
    let clientSawFirstEvent: () => void = () => {};
    const firstEventSeen = new Promise<void>((resolve) => {
      clientSawFirstEvent = resolve;
    });
    let upstreamWaited: 'client saw the event' | 'timed out' | undefined;
    script = async (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(
        sse('message_start', {
          type: 'message_start',
          message: { usage: { input_tokens: 120, cache_read_input_tokens: 30, output_tokens: 1 } },
        }),
      );
      // The upstream holds the rest of its answer until the client has seen the first event: a
      // proxy that buffered would leave the client waiting until this times out.
      upstreamWaited = await Promise.race([
        firstEventSeen.then(() => 'client saw the event' as const),
        new Promise<'timed out'>((resolve) => setTimeout(() => resolve('timed out'), 3000)),
      ]);
      res.write(
        sse('content_block_delta', {
          type: 'content_block_delta',
          delta: { type: 'text_delta', text: 'hi' },
        }),
      );
      res.write(sse('message_delta', { type: 'message_delta', usage: { output_tokens: 42 } }));
      res.end(sse('message_stop', { type: 'message_stop' }));
    };
    const base = await start();
    const response = await fetch(`${base}/anthropic/v1/messages?beta=true`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-api-key': 'sk-ant-forged-by-the-guest-000000',
        authorization: 'Bearer forged-by-the-guest',
        cookie: 'session=guest',
        'anthropic-version': '2023-06-01',
      },
      body: JSON.stringify({ model: 'claude', stream: true, messages: [] }),
    });
    expect(response.status).toBe(200);
    const reader = response.body!.getReader();
    const first = await reader.read();
    expect(new TextDecoder().decode(first.value)).toContain('message_start');
    clientSawFirstEvent();
    let rest = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      rest += new TextDecoder().decode(value);
    }
    expect(upstreamWaited).toBe('client saw the event');
    expect(rest).toContain('message_stop');

    expect(seen[0]!.path).toBe('/v1/messages?beta=true');
    expect(seen[0]!.headers['x-api-key']).toBe(ANTHROPIC_KEY);
    expect(seen[0]!.headers.authorization).toBeUndefined();
    expect(seen[0]!.headers.cookie).toBeUndefined();
    expect(seen[0]!.headers['anthropic-version']).toBe('2023-06-01');
    expect(proxy!.usage()).toEqual({ inputTokens: 150, outputTokens: 42 });
    expect(audit.events).toContainEqual(
      expect.objectContaining({
        type: 'proxy.model',
        data: expect.objectContaining({ provider: 'anthropic', path: '/v1/messages', status: 200 }),
      }),
    );
  });

  it('counts OpenAI Responses and Chat Completions usage, streamed or not, and asks chat streams for usage', async () => {
    script = (req, res, body) => {
      if (req.url === '/v1/responses') {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(sse('response.created', { type: 'response.created', response: { usage: null } }));
        res.end(
          sse('response.completed', {
            type: 'response.completed',
            response: { usage: { input_tokens: 10, output_tokens: 5 } },
          }),
        );
      } else if (JSON.parse(body).stream) {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(`data: ${JSON.stringify({ choices: [{ delta: { content: 'x' } }] })}\n\n`);
        res.write(
          `data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 7, completion_tokens: 3 } })}\n\n`,
        );
        res.end('data: [DONE]\n\n');
      } else json(res, { choices: [], usage: { prompt_tokens: 100, completion_tokens: 20 } });
    };
    const base = await start();
    const post = (path: string, body: unknown) =>
      fetch(`${base}${path}`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          authorization: 'Bearer sk-forged-0000000000000000000000',
        },
        body: JSON.stringify(body),
      }).then((r) => r.text());
    await post('/openai/v1/responses', { stream: true });
    await post('/openai/v1/chat/completions', { stream: true, messages: [] });
    await post('/openai/v1/chat/completions', { messages: [] });
    expect(seen.map((s) => s.headers.authorization)).toEqual(Array(3).fill(`Bearer ${OPENAI_KEY}`));
    expect(JSON.parse(seen[1]!.body).stream_options).toEqual({ include_usage: true });
    expect(proxy!.usage()).toEqual({ inputTokens: 117, outputTokens: 28 });
  });

  it('stops a task that exceeds its budget and refuses its further model calls', async () => {
    script = (req, res) =>
      req.url?.includes('count_tokens')
        ? json(res, { input_tokens: 5000 })
        : json(res, { type: 'message', usage: { input_tokens: 80, output_tokens: 40 } });
    const base = await start(200);
    const call = (path = '/anthropic/v1/messages') =>
      fetch(`${base}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
      });
    expect((await call('/anthropic/v1/messages/count_tokens')).status).toBe(200);
    expect(proxy!.usage()).toEqual({ inputTokens: 0, outputTokens: 0 });
    expect((await call()).status).toBe(200);
    expect(exceeded).toEqual([]);
    expect((await call()).status).toBe(200);
    expect(exceeded).toEqual([{ inputTokens: 160, outputTokens: 80 }]);
    const refused = await call();
    expect(refused.status).toBe(403);
    expect(await refused.text()).toContain('used its model budget of 200 tokens');
    expect(seen).toHaveLength(3);
    expect(exceeded).toHaveLength(1);
  });

  it('refuses endpoints the agents do not need, and audits them', async () => {
    script = (_req, res) => json(res, {});
    const base = await start();
    const attempts: Array<[string, string]> = [
      ['GET', '/anthropic/v1/models'],
      ['POST', '/anthropic/v1/files'],
      ['POST', '/openai/v1/embeddings'],
      ['GET', '/openai/v1/responses'],
      ['POST', '/v1/messages'],
      ['GET', '/'],
    ];
    for (const [method, path] of attempts) {
      const response = await fetch(`${base}${path}`, {
        method,
        ...(method === 'POST' ? { body: '{}' } : {}),
      });
      expect(response.status, `${method} ${path}`).toBe(403);
      expect(await response.text()).toContain('airlock:');
    }
    expect(seen).toEqual([]);
    expect(audit.types('t1').filter((t) => t === 'proxy.refused')).toHaveLength(attempts.length);
  });

  it('turns an upstream 401/403 into a plain 502 of its own, with no upstream header or body', async () => {
    let status = 401;
    script = (_req, res) => {
      res.writeHead(status, {
        'content-type': 'application/json',
        'www-authenticate': 'Bearer realm="OpenAI"',
        'openai-organization': 'acme-corp-org',
        'openai-project': 'proj_secret',
        'anthropic-organization-id': 'org-uuid-1234',
        'set-cookie': 'session=upstream',
      });
      res.end(
        JSON.stringify({ error: { message: `Incorrect API key provided: sk-real-${OPENAI_KEY.slice(-6)}` } }),
      );
    };
    const base = await start();
    for (const [path, code] of [
      ['/openai/v1/responses', 401],
      ['/anthropic/v1/messages', 403],
    ] as const) {
      status = code;
      const response = await fetch(`${base}${path}`, { method: 'POST', body: '{}' });
      expect(response.status).toBe(502);
      for (const header of [
        'www-authenticate',
        'openai-organization',
        'openai-project',
        'anthropic-organization-id',
        'set-cookie',
      ]) {
        expect(response.headers.get(header), header).toBeNull();
      }
      const text = await response.text();
      expect(text).toContain(`refused airlock's credentials (HTTP ${code})`);
      expect(text).not.toContain(OPENAI_KEY.slice(-6));
      expect(text).not.toContain('Incorrect API key');
    }
    // The operator's account is not named on a successful answer either.
    status = 200;
    const ok = await fetch(`${base}/openai/v1/responses`, { method: 'POST', body: '{}' });
    expect(ok.status).toBe(200);
    expect(ok.headers.get('openai-organization')).toBeNull();
    expect(ok.headers.get('anthropic-organization-id')).toBeNull();
  });

  it('refuses paths with dot segments, encoded or not, and audits them', async () => {
    script = (_req, res) => json(res, {});
    const base = await start();
    const paths = [
      '/anthropic/../x',
      '/anthropic/%2e%2e/x',
      '/anthropic/v1/%2E%2E/v1/messages',
      '/anthropic/v1/./messages',
      '/openai/v1/..%2F..%2Fv1/responses',
      '/anthropic\\..\\openai/v1/responses',
      '/git/../anthropic/v1/messages',
    ];
    for (const path of paths) {
      const response = await rawRequest(base, 'POST', path, '{}');
      expect(response.status, path).toBe(400);
      expect(response.body, path).toContain('airlock:');
    }
    expect(seen).toEqual([]);
    const refusals = audit.events.filter((e) => e.type === 'proxy.refused');
    expect(refusals.map((e) => e.data.status)).toEqual(Array(paths.length).fill(400));
    expect(logLines.join('\n')).not.toContain('task proxy request failed');
  });
});

/** Sends a request with its path exactly as given (fetch would normalise the dot segments away). */
function rawRequest(base: string, method: string, path: string, body: string) {
  const { port } = new URL(base);
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1', () => {
      socket.write(
        `${method} ${path} HTTP/1.1\r\nhost: proxy\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
      );
    });
    let text = '';
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString();
    });
    socket.on('error', reject);
    socket.on('end', () => {
      resolve({ status: Number(text.split(' ')[1]), body: text.split('\r\n\r\n')[1] ?? '' });
    });
  });
}
