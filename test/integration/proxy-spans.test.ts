import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { ROOT_CONTEXT, trace } from '@opentelemetry/api';
import { afterEach, beforeEach, expect, it } from 'vitest';
import type { TaskCredential } from '../../src/github/task-token.ts';
import { startTaskProxy } from '../../src/proxy/task-proxy.ts';
import { startTracing, type Tracing } from '../../src/tracing/tracing.ts';
import { TracingSettings } from '../../src/tracing/tracing-settings.ts';
import {
  type FixedAnthropicUpstream,
  startFixedAnthropicUpstream,
} from '../helpers/fixed-anthropic-upstream.ts';
import { memoryLogger } from '../helpers/memory-logger.ts';
import { type OtlpReceiver, startOtlpReceiver } from '../helpers/otlp-receiver.ts';
import { RecordingAudit } from '../helpers/recording-audit.ts';

const MODEL_KEY = 'sk-ant-span-test-key-0123456789abcdef';
const TASK_TOKEN = 'ghs_span_test_task_token_0123456789';
const GUEST_SECRET = 'guest-sent-credential-0123456789';
const BODY_MARKER = 'a prompt the span must not carry';
const QUERY_SECRET = 'query-string-secret-0123456789';

/** The only attributes a proxy request's span may have. */
const ALLOWED_ATTRIBUTES = new Set([
  'airlock.proxy.kind',
  'http.request.method',
  'server.address',
  'http.response.status_code',
  'airlock.proxy.bytes_from_vm',
  'airlock.proxy.bytes_to_vm',
  'airlock.proxy.cut',
  'airlock.proxy.allowed',
]);

let receiver: OtlpReceiver;
let tracing: Tracing;
let model: FixedAnthropicUpstream;
let git: Server;
let gitAuthorizations: string[];

beforeEach(async () => {
  receiver = await startOtlpReceiver();
  tracing = startTracing(TracingSettings.parse({ endpoint: `${receiver.endpoint}/v1/traces` }), {
    role: 'worker',
  });
  model = await startFixedAnthropicUpstream({ input_tokens: 10, output_tokens: 5 });
  gitAuthorizations = [];
  // The repository's smart-HTTP upstream: answers the ref advertisement the way a git server does.
  git = createServer((req, res) => {
    gitAuthorizations.push(String(req.headers.authorization));
    res.writeHead(200, { 'content-type': 'application/x-git-upload-pack-advertisement' });
    res.end('001e# service=git-upload-pack\n0000');
  });
  await new Promise<void>((resolve) => git.listen(0, '127.0.0.1', resolve));
});
afterEach(async () => {
  await tracing.shutdown();
  await receiver.close();
  model.close();
  git.closeAllConnections();
  await new Promise<void>((resolve) => git.close(() => resolve()));
});

it('records each proxy request as a child of the task run: kind, host, status and bytes, and no secret', async () => {
  const credential: TaskCredential = { token: async () => TASK_TOKEN, revoke: async () => {} };
  const gitPort = (git.address() as AddressInfo).port;
  const run = tracing.tracer.startSpan('task.run', {}, ROOT_CONTEXT);
  const proxy = await startTaskProxy({
    taskId: 't1',
    repository: { owner: 'acme', name: 'widgets' },
    branch: 'airlock/task-1',
    listen: { tcp: true },
    gitUrl: (owner, name) => `http://127.0.0.1:${gitPort}/${owner}/${name}.git`,
    credential,
    models: { anthropic: { url: model.url, apiKey: MODEL_KEY } },
    egressAllow: [],
    lookup: async (host) => {
      throw new Error(`no name ${host} in this test`);
    },
    budgetTokens: 1_000_000,
    onBudgetExceeded: () => {},
    audit: new RecordingAudit(),
    log: memoryLogger().log,
    trace: { tracer: tracing.tracer, parent: trace.setSpan(ROOT_CONTEXT, run) },
  });
  const base = proxy.address;
  try {
    const body = JSON.stringify({
      model: 'claude-test',
      max_tokens: 16,
      messages: [{ role: 'user', content: BODY_MARKER }],
    });
    const answer = await fetch(`${base}/anthropic/v1/messages`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        'x-api-key': GUEST_SECRET,
        'anthropic-version': '2023-06-01',
      },
      body,
    });
    expect(answer.status).toBe(200);
    await answer.text();
    const refs = await fetch(`${base}/git/acme/widgets.git/info/refs?service=git-upload-pack`, {
      headers: { authorization: `Bearer ${GUEST_SECRET}` },
    });
    expect(refs.status).toBe(200);
    await refs.text();
    const refused = await fetch(`${base}/nowhere?token=${QUERY_SECRET}`);
    expect(refused.status).toBe(403);
    await refused.text();
    const tunnel = connect(Number(new URL(base).port), '127.0.0.1');
    tunnel.end(
      `CONNECT blocked.test:443 HTTP/1.1\r\nhost: blocked.test:443\r\nproxy-authorization: Basic ${GUEST_SECRET}\r\n\r\n`,
    );
    let tunnelAnswer = '';
    tunnel.on('data', (chunk: Buffer) => {
      tunnelAnswer += chunk.toString();
    });
    await once(tunnel, 'close');
    expect(tunnelAnswer).toMatch(/^HTTP\/1.1 403/);
  } finally {
    await proxy.close();
  }
  run.end();
  await tracing.flush();

  // The proxy really used the credentials the spans must not carry.
  expect(model.keys).toEqual([MODEL_KEY]);
  expect(gitAuthorizations[0]).toContain(Buffer.from(`x-access-token:${TASK_TOKEN}`).toString('base64'));

  const requests = receiver.spans.filter((s) => s.name === 'proxy.request');
  const byKind = (kind: string) => requests.filter((s) => s.attributes['airlock.proxy.kind'] === kind);
  expect(requests).toHaveLength(4);
  for (const span of requests) {
    expect(span.traceId).toBe(run.spanContext().traceId);
    expect(span.parentSpanId).toBe(run.spanContext().spanId);
    expect(Object.keys(span.attributes).filter((k) => !ALLOWED_ATTRIBUTES.has(k))).toEqual([]);
  }
  const [modelSpan] = byKind('model');
  expect(modelSpan?.attributes).toMatchObject({
    'server.address': '127.0.0.1',
    'http.request.method': 'POST',
    'http.response.status_code': 200,
  });
  expect(Number(modelSpan?.attributes['airlock.proxy.bytes_from_vm'])).toBeGreaterThan(0);
  expect(Number(modelSpan?.attributes['airlock.proxy.bytes_to_vm'])).toBeGreaterThan(0);
  expect(byKind('git')[0]?.attributes).toMatchObject({
    'server.address': '127.0.0.1',
    'http.request.method': 'GET',
    'http.response.status_code': 200,
  });
  expect(byKind('refused')[0]?.attributes).toMatchObject({ 'http.response.status_code': 403 });
  expect(byKind('egress')[0]?.attributes).toMatchObject({
    'server.address': 'blocked.test',
    'http.request.method': 'CONNECT',
    'http.response.status_code': 403,
    'airlock.proxy.allowed': false,
  });
  // Nothing that left the process (every export, as sent) holds a credential, a body or a query.
  const exported = Buffer.concat(receiver.bodies);
  for (const secret of [MODEL_KEY, TASK_TOKEN, GUEST_SECRET, BODY_MARKER, QUERY_SECRET]) {
    expect(exported.includes(secret), secret).toBe(false);
  }
});
