import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { TaskCredential } from '../../src/github/task-token.ts';
import { MAX_MODEL_REQUESTS_IN_FLIGHT } from '../../src/proxy/model-proxy.ts';
import { startTaskProxy, type TaskProxy } from '../../src/proxy/task-proxy.ts';
import type { TokenUsage } from '../../src/proxy/usage-meter.ts';
import { memoryLogger } from '../helpers/memory-logger.ts';
import { RecordingAudit } from '../helpers/recording-audit.ts';
import {
  type RecordingModelUpstream,
  startRecordingModelUpstream,
} from '../helpers/recording-model-upstream.ts';
import { waitFor } from '../helpers/wait-for.ts';

// The budget holds against a client that walks away from a streamed answer (the provider bills it
// all the same) and against many requests sent at once.

const noGit: TaskCredential = {
  token: async () => {
    throw new Error('this test does not use git');
  },
  revoke: async () => {},
};

let upstream: RecordingModelUpstream;
let proxy: TaskProxy | undefined;
let audit: RecordingAudit;
let exceeded: TokenUsage[];
let logLines: string[];

beforeEach(async () => {
  audit = new RecordingAudit();
  exceeded = [];
  upstream = await startRecordingModelUpstream();
});

afterEach(async () => {
  await proxy?.close();
  proxy = undefined;
  await upstream.close();
});

async function start(budgetTokens: number): Promise<string> {
  const { log, lines } = memoryLogger();
  logLines = lines;
  proxy = await startTaskProxy({
    taskId: 't1',
    repository: { owner: 'acme', name: 'widgets' },
    branch: 'airlock/task-1',
    listen: { tcp: true },
    gitUrl: () => 'http://127.0.0.1:1/unused.git',
    credential: noGit,
    models: { anthropic: { url: upstream.url, apiKey: 'sk-ant-test-key-0123456789' } },
    egressAllow: [],
    budgetTokens,
    onBudgetExceeded: (usage) => exceeded.push(usage),
    audit,
    log,
  });
  return proxy.address;
}

const sse = (event: string, data: unknown) => `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
const request = JSON.stringify({
  model: 'claude',
  max_tokens: 1000,
  stream: true,
  messages: [{ role: 'user', content: 'hi' }],
});

describe('model budget through the task proxy', () => {
  it('counts the usage of an answer whose client went away before it ended', async () => {
    let clientLeft: () => void = () => {};
    const left = new Promise<void>((resolve) => {
      clientLeft = resolve;
    });
    upstream.answer = async (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(
        sse('message_start', {
          type: 'message_start',
          message: { usage: { input_tokens: 10, output_tokens: 1 } },
        }),
      );
      res.write(
        sse('content_block_delta', {
          type: 'content_block_delta',
          delta: { type: 'text_delta', text: 'lots' },
        }),
      );
      // The rest of the answer, and its usage, comes only once the client has gone.
      await left;
      res.write(sse('message_delta', { type: 'message_delta', usage: { output_tokens: 1_000_000 } }));
      res.end(sse('message_stop', { type: 'message_stop' }));
    };
    const base = await start(100_000);
    const client = new AbortController();
    const response = await fetch(`${base}/anthropic/v1/messages`, {
      method: 'POST',
      body: request,
      signal: client.signal,
    });
    const reader = response.body!.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toContain('message_start');
    client.abort();
    // The proxy either says it keeps reading, or (as before this fix) drops the upstream request.
    await waitFor(
      () => logLines.some((l) => l.includes('model client went away')) || upstream.inFlight() === 0,
      5000,
      'the proxy to notice the client left',
    );
    clientLeft();
    await waitFor(() => audit.types('t1').includes('proxy.model'), 5000, 'the model call to be recorded');
    expect(exceeded).toEqual([{ inputTokens: 10, outputTokens: 1_000_000 }]);
    expect(audit.types('t1')).toContain('proxy.budget_exceeded');
    const refused = await fetch(`${base}/anthropic/v1/messages`, { method: 'POST', body: request });
    expect(refused.status).toBe(403);
  });

  it('counts what a request may have cost when its answer is cut off before its usage', async () => {
    upstream.answer = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(
        sse('message_start', {
          type: 'message_start',
          message: { usage: { input_tokens: 10, output_tokens: 1 } },
        }),
      );
      res.write('', () => res.socket?.destroy());
    };
    const base = await start(500);
    const response = await fetch(`${base}/anthropic/v1/messages`, { method: 'POST', body: request });
    await response.text().catch(() => '');
    await waitFor(() => audit.types('t1').includes('proxy.model'), 5000, 'the model call to be recorded');
    // 10 input tokens reported; the estimate (request size and max_tokens 1000) is what counts.
    expect(proxy!.usage().outputTokens).toBe(1000);
    expect(exceeded).toHaveLength(1);
  });

  it('lets one of 50 parallel requests through a budget with room for one', async () => {
    upstream.answer = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(
        sse('message_start', {
          type: 'message_start',
          message: { usage: { input_tokens: 30, output_tokens: 1 } },
        }),
      );
      res.write(sse('message_delta', { type: 'message_delta', usage: { output_tokens: 1000 } }));
      res.end(sse('message_stop', { type: 'message_stop' }));
    };
    const base = await start(1030);
    const statuses = await Promise.all(
      Array.from({ length: 50 }, async () => {
        const response = await fetch(`${base}/anthropic/v1/messages`, { method: 'POST', body: request });
        await response.text();
        return response.status;
      }),
    );
    expect(upstream.received).toHaveLength(1);
    expect(statuses.filter((s) => s === 200)).toHaveLength(1);
    expect(statuses.filter((s) => s === 403)).toHaveLength(49);
    expect(proxy!.usage()).toEqual({ inputTokens: 30, outputTokens: 1000 });
  });

  it(`keeps at most ${MAX_MODEL_REQUESTS_IN_FLIGHT} requests of a task in flight; the others wait their turn`, async () => {
    const waiting: Array<() => void> = [];
    let most = 0;
    upstream.answer = async (_req, res) => {
      const answered = new Promise<void>((resolve) => waiting.push(resolve));
      most = Math.max(most, waiting.length);
      await answered;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ type: 'message', usage: { input_tokens: 1, output_tokens: 1 } }));
    };
    const base = await start(10_000_000);
    const all = Promise.all(
      Array.from({ length: 20 }, async () => {
        const response = await fetch(`${base}/anthropic/v1/messages`, { method: 'POST', body: request });
        await response.text();
        return response.status;
      }),
    );
    for (let remaining = 20; remaining > 0; remaining -= 1) {
      const full = Math.min(MAX_MODEL_REQUESTS_IN_FLIGHT, remaining);
      await waitFor(() => waiting.length >= full, 5000, `${full} requests at the upstream`);
      waiting.shift()!();
    }
    expect(await all).toEqual(Array(20).fill(200));
    expect(most).toBe(MAX_MODEL_REQUESTS_IN_FLIGHT);
  });
});
