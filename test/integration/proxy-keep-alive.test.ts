import http from 'node:http';
import net from 'node:net';
import { afterEach, expect, it } from 'vitest';
import type { TaskCredential } from '../../src/github/task-token.ts';
import {
  CLIENT_KEEP_ALIVE_MS,
  startTaskProxy,
  type TaskProxy,
  type TaskProxyOptions,
} from '../../src/proxy/task-proxy.ts';
import { memoryLogger } from '../helpers/memory-logger.ts';
import { RecordingAudit } from '../helpers/recording-audit.ts';
import { type ScriptedModelServer, startScriptedModelServer } from '../helpers/scripted-model-server.ts';

// Agent CLIs keep model connections in a pool and reuse them minutes later. The proxy must not be
// the side that closes an idle one, or a call sent just as it closes fails the agent.

const noGit: TaskCredential = {
  token: async () => {
    throw new Error('this test does not use git');
  },
  revoke: async () => {},
};

let model: ScriptedModelServer | undefined;
let proxy: TaskProxy | undefined;
let agent: http.Agent | undefined;

afterEach(async () => {
  agent?.destroy();
  await proxy?.close();
  await model?.close();
});

interface Answer {
  status: number;
  reused: boolean;
  keepAlive: string;
}

function post(url: string, body: unknown): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      { method: 'POST', agent, headers: { 'content-type': 'application/json' } },
      (res) => {
        res.resume();
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            reused: req.reusedSocket,
            keepAlive: String(res.headers['keep-alive']),
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

async function startProxy(options: Partial<TaskProxyOptions> = {}): Promise<string> {
  model = await startScriptedModelServer({ openai: [{ type: 'message', text: 'hi' }] });
  proxy = await startTaskProxy({
    taskId: 't1',
    repository: { owner: 'acme', name: 'widgets' },
    branch: 'airlock/task-1',
    listen: { tcp: true },
    gitUrl: () => 'http://127.0.0.1:1/unused.git',
    credential: noGit,
    models: { openai: { url: model.url, apiKey: 'sk-test' } },
    egressAllow: [],
    budgetTokens: 1_000_000,
    onBudgetExceeded: () => {},
    audit: new RecordingAudit(),
    log: memoryLogger().log,
    ...options,
  });
  agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  return `${proxy.address}/openai/v1/responses`;
}

const request = { model: 'm', input: 'hi', stream: true, tools: [{ type: 'function', name: 'f' }] };

// Node writes the `Keep-Alive: timeout=N` header from the server's own keep-alive setting, the one
// that closes idle connections: the header is that setting, read off the wire.
it('keeps an idle client connection open for minutes, not Node’s 5 s default, and says so', async () => {
  const url = await startProxy();
  const first = await post(url, request);
  expect(first).toMatchObject({ status: 200, reused: false });
  expect(first.keepAlive).toBe(`timeout=${CLIENT_KEEP_ALIVE_MS / 1000}`);
  expect(CLIENT_KEEP_ALIVE_MS).toBeGreaterThanOrEqual(5 * 60_000);
  expect(await post(url, request)).toMatchObject({ status: 200, reused: true });
});

it('closes an idle client connection when the keep-alive it advertised runs out', async () => {
  await startProxy({ clientKeepAliveMs: 1_000 });
  const { port } = new URL(proxy!.address);
  // A raw connection, so no client-side pool can close it first: the server's FIN is its `end`.
  const socket = net.connect(Number(port), '127.0.0.1');
  try {
    let answer = '';
    socket.on('data', (chunk: Buffer) => {
      answer += chunk.toString();
    });
    const ended = new Promise<void>((resolve) => socket.once('end', resolve));
    socket.write('GET /nothing-here HTTP/1.1\r\nHost: proxy\r\n\r\n');
    await ended;
    expect(answer).toMatch(/^HTTP\/1\.1 403 /);
    expect(answer).toMatch(/^Connection: keep-alive\r$/im);
    expect(answer).toMatch(/^Keep-Alive: timeout=1\r$/im);
  } finally {
    socket.destroy();
  }
});
