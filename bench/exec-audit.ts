// npm run bench -- exec-audit [--seconds N] [--rate N]
// What a guest's tight exec loop costs the control plane's only thread. A child process stands in
// for a fast guest (a KVM guest in an exec loop reports thousands of processes a second): it sends
// exec records at --rate per second into a real GuestChannel, whose records become `vm.exec` audit
// rows as in the task runner (group commit, as in production). Meanwhile a client on another
// process asks an HTTP server on the same thread as the channel for a webhook-style
// acknowledgement (one audit row, then 202) every 20 ms. Figures: ack latency quiet, during the
// flood with the per-VM cap on exec records (DEFAULT_EXEC_AUDIT_RATE), and without it.
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { AuditLog } from '../src/audit/audit-log.ts';
import { systemClock } from '../src/clock.ts';
import { DEFAULT_EXEC_AUDIT_RATE, type ExecAuditRate } from '../src/sandbox/exec-audit-limiter.ts';
import { GuestChannel } from '../src/sandbox/guest-channel.ts';
import { SecretRedactor } from '../src/secrets.ts';
import { openDatabase, openSqliteStore } from '../src/store/database.ts';
import { TaskStore } from '../src/tasks/task-store.ts';
import { newTaskInput } from '../test/helpers/task-fixture.ts';
import { quantile, round, writeResults } from './stats.ts';

const { values } = parseArgs({
  options: { seconds: { type: 'string', default: '10' }, rate: { type: 'string', default: '20000' } },
});
const seconds = Number(values.seconds);
const rate = Number(values.rate);

const dir = await mkdtemp(path.join(tmpdir(), 'airlock-bench-exec-'));
const db = openDatabase(path.join(dir, 'airlock.sqlite'));
const store = openSqliteStore(db);
const audit = new AuditLog(store, systemClock, new SecretRedactor(), { groupCommit: { maxEvents: 512 } });
const tasks = new TaskStore(store, systemClock);
const newTask = async () =>
  (
    await tasks.create(
      newTaskInput({
        repoId: 1,
        actorId: 101,
        triggerEvent: 'issues',
        triggerUrl: 'http://127.0.0.1/acme/widgets/issues/1',
      }),
    )
  ).id;
const webhookTask = await newTask();

// The acknowledgement: what the webhook route does on the control plane's thread, reduced to one
// audit row and an answer.
const acks = createHttpServer((_req, res) => {
  audit.append(webhookTask, 'task.state', { state: 'queued' });
  res.writeHead(202).end();
});
await new Promise<void>((resolve) => acks.listen(0, '127.0.0.1', resolve));
const ackPort = (acks.address() as { port: number }).port;

/** Ack latencies (ms) measured by a client in its own process for `ms`. */
function measureAcks(ms: number): Promise<number[]> {
  const client = spawn(
    process.execPath,
    [
      '-e',
      `const http = require('node:http'); const agent = new http.Agent({ keepAlive: true });
       const out = []; const end = Date.now() + ${ms};
       const one = () => { const t = performance.now();
         http.get({ port: ${ackPort}, host: '127.0.0.1', agent }, (res) => { res.resume(); res.on('end', () => {
           out.push(performance.now() - t);
           if (Date.now() < end) setTimeout(one, 20); else { process.stdout.write(JSON.stringify(out)); process.exit(0); } }); }); };
       one();`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let text = '';
  client.stdout.on('data', (d) => {
    text += d;
  });
  return new Promise((resolve) => client.on('exit', () => resolve(JSON.parse(text) as number[])));
}

/** Floods a fresh channel with exec records at `rate`/s for the run; returns what it measured. */
async function flood(execAuditRate: ExecAuditRate) {
  const taskId = await newTask();
  const socketPath = path.join(dir, `ctl-${taskId}.sock`);
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  const guest = spawn(
    process.execPath,
    [
      '-e',
      `const s = require('node:net').connect(${JSON.stringify(socketPath)});
       const line = (n) => JSON.stringify({ type: 'exec_audit', ts: new Date().toISOString(), pid: n, ppid: 1, uid: 1000,
         argv: ['/bin/true', 'loop-' + n], cwd: '/work/repo', exe: '/usr/bin/true' }) + '\\n';
       let n = 0; const start = Date.now();
       const tick = () => { const due = Math.floor(((Date.now() - start) / 1000) * ${rate}); let chunk = '';
         while (n < due) chunk += line(n++); if (chunk) s.write(chunk); setTimeout(tick, 5); };
       s.on('connect', tick);`,
    ],
    { stdio: 'ignore' },
  );
  const channel = new GuestChannel(await accepted, 64 * 1024 * 1024, execAuditRate);
  let kept = 0;
  let dropped = 0;
  channel.onExecAudit((record) => {
    kept++;
    audit.append(taskId, 'vm.exec', { ...record });
  });
  channel.onExecAuditLoss((loss) => {
    if (loss.kind === 'dropped') dropped += loss.records;
    audit.append(taskId, 'vm.exec.dropped', { ...loss });
  });
  const delay = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  const latencies = await measureAcks(seconds * 1000);
  delay.disable();
  guest.kill();
  channel.flushExecAuditDrops();
  channel.close(new Error('bench over'));
  server.close();
  return { latencies, kept, dropped, loopDelayP99Ms: round(delay.percentile(99) / 1e6, 1) };
}

const summary = (latencies: number[]) => ({
  ackP50Ms: round(quantile(latencies, 0.5), 2),
  ackP99Ms: round(quantile(latencies, 0.99), 2),
  acks: latencies.length,
});
try {
  const quiet = summary(await measureAcks(seconds * 1000));
  const capped = await flood(DEFAULT_EXEC_AUDIT_RATE);
  const uncapped = await flood({ perSecond: Number.MAX_SAFE_INTEGER, burst: Number.MAX_SAFE_INTEGER });
  const figures = {
    seconds,
    guestRecordsPerSecond: rate,
    quiet,
    capped: {
      ...summary(capped.latencies),
      kept: capped.kept,
      dropped: capped.dropped,
      loopDelayP99Ms: capped.loopDelayP99Ms,
    },
    uncapped: {
      ...summary(uncapped.latencies),
      kept: uncapped.kept,
      dropped: uncapped.dropped,
      loopDelayP99Ms: uncapped.loopDelayP99Ms,
    },
  };
  writeResults('exec-audit', figures);
} finally {
  await audit.flush();
  acks.close();
  await store.close();
  await rm(dir, { recursive: true, force: true });
}
