import http from 'node:http';
import { afterEach, expect, it } from 'vitest';
import type { TaskCredential } from '../../src/github/task-token.ts';
import { CLIENT_KEEP_ALIVE_MS, startTaskProxy, type TaskProxy } from '../../src/proxy/task-proxy.ts';
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

function post(url: string, body: unknown): Promise<{ status: number; reused: boolean; keepAlive: string }> {
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

it('keeps an idle client connection open past Node’s 5 s default, and says so', async () => {
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
  });
  agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const url = `${proxy.address}/openai/v1/responses`;
  const request = { model: 'm', input: 'hi', stream: true, tools: [{ type: 'function', name: 'f' }] };

  const first = await post(url, request);
  expect(first).toMatchObject({ status: 200, reused: false });
  expect(first.keepAlive).toBe(`timeout=${CLIENT_KEEP_ALIVE_MS / 1000}`);
  await new Promise((resolve) => setTimeout(resolve, 6_000));
  expect(await post(url, request)).toMatchObject({ status: 200, reused: true });
}, 20_000);
