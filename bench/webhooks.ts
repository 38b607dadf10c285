// npm run bench -- webhooks [--deliveries N] [--concurrency N] [--otlp] [--database-url URL] [--output FILE]
// (--otlp: the app exports its traces to a loopback OTLP/HTTP receiver, as with
// OTEL_EXPORTER_OTLP_ENDPOINT set; the figures go to bench/results/webhooks-otlp.json.)
// (--database-url: the app is a control plane (AIRLOCK_ROLE=control) on that PostgreSQL database,
// which must be empty, instead of airlock on its own SQLite; --output: the figures go to FILE,
// not bench/results/, as bench/scale.ts asks for them.)
// (BENCH_DUMP=file writes every ack's start and latency there; BENCH_APP_NODE_ARGS passes Node
// flags such as --cpu-prof to the app.)
// Sends signed deliveries (triggers and noise, 5% redelivered) at the running control plane over
// loopback, then checks the database: every trigger made exactly one task, none twice.
//
// Three processes, as in production: the app (its own process, as `npm start` runs it), the
// sender, and the GitHub emulator that the app's intake calls. The emulator runs git for every
// API read; on real deployments GitHub is on other machines, so the emulator (this process, and
// the git processes it starts) runs at a lower CPU priority than the app and the sender.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import os, { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { sign } from '@octokit/webhooks-methods';
import type { ExpressionBuilder } from 'kysely';
import { openStore } from '../src/store/database.ts';
import type { Schema } from '../src/store/schema.ts';
import { startGitHubEmulator } from '../test/emulator/index.ts';
import { type OtlpReceiver, startOtlpReceiver } from '../test/helpers/otlp-receiver.ts';
import { examplePayload } from '../test/helpers/webhook-examples.ts';
import { quantile, round, writeResults } from './stats.ts';

const { values } = parseArgs({
  options: {
    deliveries: { type: 'string', default: '2000' },
    concurrency: { type: 'string', default: '50' },
    role: { type: 'string' },
    spec: { type: 'string' },
    otlp: { type: 'boolean', default: false },
    'database-url': { type: 'string' },
    output: { type: 'string' },
  },
});

const WARMUP_DELIVERIES = 200;
const WARMUP_PAUSE_MS = 1000;

interface AppSpec {
  dataDir: string;
  /** The PostgreSQL database of a control plane; without it, airlock on SQLite under dataDir. */
  databaseUrl?: string;
  /** OTEL_EXPORTER_OTLP_ENDPOINT for the app, when traces are exported. */
  otlpEndpoint?: string;
  github: { appId: number; privateKey: string; webhookSecret: string; apiUrl: string; appSlug: string };
}
interface Delivery {
  id: string;
  event: string;
  body: string;
  signature: string;
  trigger: boolean;
}
interface SenderSpec {
  url: string;
  concurrency: number;
  /** Sent first and reported apart: the app's JIT warms up on them, as it has in production. */
  warmup: Delivery[];
  deliveries: Delivery[];
}
interface SenderReport {
  acks: number[];
  starts: number[];
  failures: number;
  seconds: number;
  warmupAcks: number[];
}

if (values.role === 'app') await runApp(JSON.parse(await readFile(values.spec!, 'utf8')) as AppSpec);
else if (values.role === 'sender')
  await runSender(JSON.parse(await readFile(values.spec!, 'utf8')) as SenderSpec);
else await orchestrate();

/** The app: airlock built as production builds it; tasks it starts wait until it stops. */
async function runApp(spec: AppSpec): Promise<void> {
  const { randomBytes } = await import('node:crypto');
  const { buildAirlock } = await import('../src/airlock.ts');
  const { loadAppConfig } = await import('../src/config/app-config.ts');
  const { createLogger } = await import('../src/logger.ts');
  const { SecretRedactor } = await import('../src/secrets.ts');
  const redactor = new SecretRedactor();
  const log = createLogger({ level: 'warn', redactor, destination: process.stderr });
  const airlock = await buildAirlock(
    loadAppConfig({
      HOST: '127.0.0.1',
      PORT: '0',
      AIRLOCK_PUBLIC_URL: 'http://airlock.test',
      AIRLOCK_DATA_DIR: spec.dataDir,
      APP_ID: String(spec.github.appId),
      PRIVATE_KEY: spec.github.privateKey,
      WEBHOOK_SECRET: spec.github.webhookSecret,
      GITHUB_API_URL: spec.github.apiUrl,
      AIRLOCK_MAX_CONCURRENT_TASKS: '4',
      // A control plane as deployed on several hosts: it takes webhooks and queues tasks for workers.
      ...(spec.databaseUrl
        ? {
            AIRLOCK_ROLE: 'control',
            DATABASE_URL: spec.databaseUrl,
            AIRLOCK_WORKER_SECRET: randomBytes(32).toString('hex'),
            AIRLOCK_INTERNAL_PORT: '0',
          }
        : {}),
      ...(spec.otlpEndpoint ? { OTEL_EXPORTER_OTLP_ENDPOINT: spec.otlpEndpoint } : {}),
    }),
    {
      log,
      redactor,
      // The bench measures intake, not agents.
      runner: {
        run: (_task, ctx) =>
          new Promise((_resolve, reject) =>
            ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)),
          ),
      },
    },
  );
  process.stdout.write(`${airlock.github?.server.webhookUrl}\n`);
  process.once('SIGTERM', () => {
    airlock.stop().then(() => process.exit(0));
  });
}

/** The sender: posts every delivery, `concurrency` at a time, and reports each ack's latency. */
async function runSender(spec: SenderSpec): Promise<void> {
  // node:http with keep-alive: the lightest client, so the figures are the app's, not the sender's.
  const agent = new http.Agent({ keepAlive: true, maxSockets: spec.concurrency });
  const warmup = await sendAll(spec.url, spec.warmup, spec.concurrency, agent);
  // A pause, as between GitHub's bursts: the app dispatches the warm-up deliveries, warming that path too.
  await new Promise((resolve) => setTimeout(resolve, WARMUP_PAUSE_MS));
  const run = await sendAll(spec.url, spec.deliveries, spec.concurrency, agent);
  const report: SenderReport = { ...run, warmupAcks: warmup.acks, failures: warmup.failures + run.failures };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

async function sendAll(url: string, deliveries: Delivery[], concurrency: number, agent: http.Agent) {
  const acks: number[] = [];
  const starts: number[] = [];
  let failures = 0;
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < deliveries.length) {
        const d = deliveries[next++]!;
        const t0 = performance.now();
        const status = await post(url, d, agent);
        acks.push(performance.now() - t0);
        starts.push(t0 - started);
        if (status !== 200) failures++;
      }
    }),
  );
  return { acks, starts, failures, seconds: (performance.now() - started) / 1000 };
}

function post(url: string, d: Delivery, agent: http.Agent): Promise<number> {
  return new Promise((resolve, reject) => {
    const request = http.request(
      url,
      {
        method: 'POST',
        agent,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(d.body),
          'x-github-event': d.event,
          'x-github-delivery': d.id,
          'x-hub-signature-256': d.signature,
        },
      },
      (response) => {
        response.resume();
        response.on('end', () => resolve(response.statusCode ?? 0));
      },
    );
    request.on('error', reject);
    request.end(d.body);
  });
}

async function orchestrate(): Promise<void> {
  const total = Number(values.deliveries);
  const concurrency = Number(values.concurrency);
  const dir = await mkdtemp(path.join(tmpdir(), 'airlock-bench-webhooks-'));
  const emulator = await startGitHubEmulator({ appSlug: 'airlock-bench' });
  // What an OpenTelemetry Collector is to the app: it receives (and decodes) every export.
  const receiver: OtlpReceiver | undefined = values.otlp ? await startOtlpReceiver() : undefined;
  const children: ChildProcess[] = [];
  try {
    const repo = 'acme/widgets';
    await emulator.createRepo('acme', 'widgets', { files: { 'README.md': '# widgets\n' } });
    emulator.addUser('alice', { id: 101 });
    emulator.setPermission(repo, 'alice', 'write');
    const installationId = emulator.installApp('acme');
    const world = { repo: { id: 1, fullName: repo }, sender: { login: 'alice', id: 101 }, installationId };

    const unique: Array<Omit<Delivery, 'body' | 'signature'> & { payload: unknown }> = [];
    const uniqueCount = Math.round(total / 1.05);
    for (let i = 0; i < uniqueCount; i++) {
      const kind = i % 4;
      const id = `bench-${i}`;
      if (kind === 0) {
        const issue = emulator.createIssue(repo, { title: `Bench ${i}`, user: 'alice' });
        const payload = examplePayload('issues', 'labeled', world);
        payload.issue = { ...payload.issue, number: issue.number, pull_request: undefined };
        payload.label = { ...payload.label, name: 'airlock' };
        unique.push({ id, event: 'issues', payload, trigger: true });
      } else if (kind === 1) {
        const issue = emulator.createIssue(repo, { title: `Bench ${i}`, user: 'alice' });
        const payload = examplePayload('issue_comment', 'created', world);
        payload.issue = { ...payload.issue, number: issue.number, pull_request: undefined };
        const body = `/airlock please handle ${i}`;
        const comment = emulator.addComment(repo, issue.number, { body, user: 'alice' });
        payload.comment = { ...payload.comment, id: comment.id, body, performed_via_github_app: null };
        unique.push({ id, event: 'issue_comment', payload, trigger: true });
      } else if (kind === 2) {
        const payload = examplePayload('issue_comment', 'created', world);
        payload.comment = { ...payload.comment, body: 'just a comment', performed_via_github_app: null };
        unique.push({ id, event: 'issue_comment', payload, trigger: false });
      } else {
        unique.push({
          id,
          event: 'issues',
          payload: examplePayload('issues', 'opened', world),
          trigger: false,
        });
      }
    }
    const signed: Delivery[] = [];
    for (const d of unique) {
      const body = JSON.stringify(d.payload);
      signed.push({
        id: d.id,
        event: d.event,
        trigger: d.trigger,
        body,
        signature: await sign(emulator.app.webhookSecret, body),
      });
    }
    // Pings: signed like the rest, never triggers; the app stores and ignores them.
    const warmup: Delivery[] = [];
    for (let i = 0; i < WARMUP_DELIVERIES; i++) {
      const body = JSON.stringify({ ...examplePayload('ping', null, world), zen: `warm-up ${i}` });
      const signature = await sign(emulator.app.webhookSecret, body);
      warmup.push({ id: `warmup-${i}`, event: 'ping', body, signature, trigger: false });
    }
    const all = [...signed];
    while (all.length < total) all.push(signed[Math.floor((all.length * 7919) % signed.length)]!);
    // A fixed shuffle, so redeliveries arrive interleaved with first deliveries, the same every run.
    const order = all.map((d, i) => ({ d, key: hash(`${d.id}:${i}`) })).sort((a, b) => a.key - b.key);

    const databaseUrl = values['database-url'];
    const appSpec: AppSpec = {
      dataDir: dir,
      ...(databaseUrl ? { databaseUrl } : {}),
      ...(receiver ? { otlpEndpoint: receiver.endpoint } : {}),
      github: {
        appId: emulator.app.id,
        privateKey: emulator.app.privateKey,
        webhookSecret: emulator.app.webhookSecret,
        apiUrl: emulator.apiUrl,
        appSlug: emulator.app.slug,
      },
    };
    await writeFile(path.join(dir, 'app.json'), JSON.stringify(appSpec));
    const app = child(['--role', 'app', '--spec', path.join(dir, 'app.json')]);
    children.push(app);
    const url = await firstLine(app);
    await writeFile(
      path.join(dir, 'sender.json'),
      JSON.stringify({ url, concurrency, warmup, deliveries: order.map((o) => o.d) } satisfies SenderSpec),
    );
    const sender = child(['--role', 'sender', '--spec', path.join(dir, 'sender.json')]);
    children.push(sender);
    // GitHub's side (this process and the git it runs) yields the CPU to the app and the sender.
    os.setPriority(process.pid, 10);
    const report = JSON.parse(await firstLine(sender)) as SenderReport;

    if (process.env.BENCH_DUMP) await writeFile(process.env.BENCH_DUMP, JSON.stringify(report));
    // The app's database, as the app opened it (it has migrated it by the time it answers).
    const store = await openStore(
      databaseUrl ? { url: databaseUrl } : { file: path.join(dir, 'airlock.sqlite') },
    );
    // Pending: stored but not yet dispatched to Probot, or dispatched but not yet through intake.
    const pending = async () => {
      const count = (eb: ExpressionBuilder<Schema, keyof Schema>) =>
        eb.fn.countAll<number | string>().as('n');
      const inbox = await store.db
        .selectFrom('webhook_inbox')
        .select(count)
        .where('dispatched_at', 'is', null)
        .executeTakeFirstOrThrow();
      const intake = await store.db
        .selectFrom('deliveries')
        .select(count)
        .where('status', '=', 'pending')
        .executeTakeFirstOrThrow();
      return Number(inbox.n) + Number(intake.n);
    };
    const deadline = Date.now() + 180_000;
    while ((await pending()) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    const rows = await store.db
      .selectFrom('tasks')
      .select((eb) => ['delivery_id', eb.fn.countAll<number | string>().as('n')])
      .groupBy('delivery_id')
      .execute();
    const stillPending = await pending();
    await store.close();
    // The app stops (sending the spans it still holds) before the receiver is counted.
    await stopped(app);

    const figures = {
      database: databaseUrl ? 'postgres' : 'sqlite',
      otlp_export: receiver !== undefined,
      ...(receiver
        ? { otlp_spans_received: receiver.spans.length, otlp_exports_received: receiver.requests.length }
        : {}),
      deliveries: all.length,
      redeliveries: all.length - unique.length,
      concurrency,
      non_200: report.failures,
      ack_p50_ms: round(quantile(report.acks, 0.5)),
      ack_p99_ms: round(quantile(report.acks, 0.99)),
      deliveries_per_s: round(all.length / report.seconds, 1),
      warmup_deliveries: warmup.length,
      warmup_ack_p99_ms: round(quantile(report.warmupAcks, 0.99)),
      tasks_expected: signed.filter((d) => d.trigger).length,
      tasks_created: rows.length,
      duplicates: rows.filter((r) => Number(r.n) > 1).length,
      deliveries_left_pending: stillPending,
      targets: { ack_p99_ms: '< 25', tasks_created: '== tasks_expected', duplicates: '== 0' },
      note:
        'app, sender and GitHub emulator in separate processes; the emulator at nice 10. ' +
        'Before the timed deliveries, the sender posts warm-up ping deliveries (what GitHub sends first ' +
        'to a new hook) and pauses 1 s, so the figures are the running app, not its first-second JIT; ' +
        'the warm-up is reported apart.' +
        (receiver
          ? ' With --otlp the app exports every span over OTLP/HTTP (protobuf) to a receiver in the orchestrator process (nice 10), which decodes them.'
          : ' Traces are not exported (no OTLP endpoint): spans get ids only.') +
        (databaseUrl
          ? ' The app is a control plane (AIRLOCK_ROLE=control) on PostgreSQL: it queues tasks for workers and runs none.'
          : ' The app is airlock in one process on SQLite; it starts up to 4 tasks, which wait until it stops.'),
    };
    if (values.output) await writeFile(values.output, `${JSON.stringify(figures)}\n`);
    else writeResults(receiver ? 'webhooks-otlp' : 'webhooks', figures);
  } finally {
    await Promise.all(children.map(stopped));
    await emulator.close();
    await receiver?.close();
    await rm(dir, { recursive: true, force: true });
  }
}

/** Asks a child to stop (SIGTERM) and waits until it has exited. */
function stopped(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  proc.kill('SIGTERM');
  return exited;
}

function child(args: string[]): ChildProcess {
  // BENCH_APP_NODE_ARGS passes Node flags to the app process (e.g. "--cpu-prof").
  const flags = args[1] === 'app' ? (process.env.BENCH_APP_NODE_ARGS?.split(' ').filter(Boolean) ?? []) : [];
  return spawn(process.execPath, [...flags, fileURLToPath(import.meta.url), ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
}

function firstLine(proc: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    proc.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const i = out.indexOf('\n');
      if (i >= 0) resolve(out.slice(0, i));
    });
    proc.once('exit', (code) => reject(new Error(`bench child exited with ${code} before answering`)));
  });
}

function hash(s: string): number {
  let x = 2166136261;
  for (let i = 0; i < s.length; i++) x = Math.imul(x ^ s.charCodeAt(i), 16777619);
  return x >>> 0;
}
