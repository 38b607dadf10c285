// npm run bench -- audit [--tasks N] [--events N] [--pages N]
// Appends 1,000,000 audit events over 10,000 tasks (a realistic mix: processes, proxy traffic,
// agent messages and prompts kept under the retention policy, diffs) into a file database in WAL
// mode, as the control plane does; verifies one 10,000-event chain; then renders task pages through
// the real web app, signed in through the GitHub emulator's OAuth with access checked as in production.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { AuditLog } from '../src/audit/audit-log.ts';
import { verifyAuditChains } from '../src/audit/verify-chain.ts';
import { systemClock } from '../src/clock.ts';
import { createLogger } from '../src/logger.ts';
import { AirlockMetrics } from '../src/metrics/airlock-metrics.ts';
import { SecretRedactor } from '../src/secrets.ts';
import { openDatabase, openSqliteStore } from '../src/store/database.ts';
import { TaskStore } from '../src/tasks/task-store.ts';
import { webApp } from '../src/web/web-app.ts';
import { startGitHubEmulator } from '../test/emulator/index.ts';
import { emulatorOAuth } from '../test/emulator/routes-oauth.ts';
import { newTaskInput } from '../test/helpers/task-fixture.ts';
import { median, quantile, round, writeResults } from './stats.ts';

const { values } = parseArgs({
  options: {
    tasks: { type: 'string', default: '10000' },
    events: { type: 'string', default: '1000000' },
    pages: { type: 'string', default: '1000' },
    concurrent: { type: 'string', default: '20' },
  },
});
const taskCount = Number(values.tasks);
const eventCount = Number(values.events);
const pageCount = Number(values.pages);
const concurrent = Number(values.concurrent);
const perTask = Math.ceil(eventCount / taskCount);

const emulator = await startGitHubEmulator({ appSlug: 'airlock-bench' });
const repo = await emulator.createRepo('acme', 'widgets');
emulator.addUser('alice', { id: 101 });
emulator.setPermission('acme/widgets', 'alice', 'read');
const installationId = emulator.installApp('acme');
const dir = await mkdtemp(path.join(tmpdir(), 'airlock-bench-audit-'));
const db = openDatabase(path.join(dir, 'airlock.sqlite'));
// One SQLite connection under both, as the composition root has it.
const store = openSqliteStore(db);
const redactor = new SecretRedactor();
redactor.add(`ghs_${randomBytes(18).toString('hex')}`);
// Configured as in production (src/full-airlock.ts): group commit, at most 512 events at once.
const audit = new AuditLog(store, systemClock, redactor, { groupCommit: { maxEvents: 512 } });
// As in production: the metrics observe every event as it is appended.
const metrics = new AirlockMetrics(store, { processMetrics: false });
audit.subscribe((event) => metrics.observeAuditEvent(event));
const tasks = new TaskStore(store, systemClock);

const newTask = async () =>
  (
    await tasks.create(
      newTaskInput({
        installationId,
        repoFullName: repo.fullName,
        repoId: repo.id,
        actorId: 101,
        triggerEvent: 'issues',
        triggerUrl: `${emulator.webUrl}/acme/widgets/issues/1`,
      }),
    )
  ).id;
const ids = await store.transaction(async () => {
  const made: string[] = [];
  for (let i = 0; i < taskCount; i++) made.push(await newTask());
  return made;
});

const PATCH = `--- a/src/app.ts\n+++ b/src/app.ts\n${'@@ -1,3 +1,3 @@\n-const greeting = "hello";\n+const greeting = "hello, friend";\n context line\n'.repeat(40)}`;
const PROMPT = `You are working on acme/widgets issue #1: Make the greeting friendlier.\n${'Context from the issue thread. '.repeat(30)}`;
/** The n-th event of a task: the mix a real run produces, in the order it produces it. */
function eventFor(n: number, taskId: string): [string, Record<string, unknown>] {
  if (n === 0)
    return [
      'task.created',
      {
        actor: { login: 'alice', id: 101 },
        trigger: { event: 'issues', deliveryId: taskId },
        repository: 'acme/widgets',
        base: 'main',
        branch: `airlock/issue-1-${taskId}`,
      },
    ];
  if (n === 1) return ['task.prompt', { text: PROMPT, truncated: false }];
  if (n === 2)
    return [
      'vm.created',
      {
        id: `vm-${taskId}`,
        image: 'sha256:'.padEnd(71, 'a'),
        accelerator: 'tcg',
        bootMs: 5200,
        limits: { cpus: 2, memory_mib: 2048 },
      },
    ];
  if (n === perTask - 2)
    return [
      'git.diff',
      { base: 'a'.repeat(40), head: 'b'.repeat(40), stat: ' src/app.ts | 80 ++++----', patch: PATCH },
    ];
  if (n === perTask - 1) return ['task.outcome', { state: 'succeeded', reason: null }];
  switch (n % 8) {
    case 0:
    case 1:
    case 2:
    case 3:
      return [
        'vm.exec',
        {
          pid: 1000 + n,
          ppid: 999,
          uid: 1000,
          cwd: '/work/repo',
          argv: ['node', 'node_modules/.bin/vitest', 'run', `test/unit/case-${n}.test.ts`],
        },
      ];
    case 4:
    case 5:
      return [
        'agent.event',
        {
          kind: 'message',
          text: `Step ${n}: reading src/app.ts and the failing test output to decide what to change next.`,
        },
      ];
    case 6:
      return [
        'proxy.egress',
        {
          method: 'CONNECT',
          host: 'registry.npmjs.org',
          port: 443,
          addresses: ['104.16.0.1'],
          decision: 'allowed',
          bytes_up: 812,
          bytes_down: 40312,
        },
      ];
    default:
      return [
        'proxy.model',
        {
          provider: 'anthropic',
          path: '/v1/messages',
          status: 200,
          usage: { input_tokens: 1200, output_tokens: 300 },
          duration_ms: 2100,
        },
      ];
  }
}

// Appends: tasks run `concurrent` at a time, their events interleaved, each append on its own
// through AuditLog.append; the event loop turns after every round of one event per running task
// (as events from several VMs arrive in separate I/O callbacks), so a group commit holds at most
// `concurrent` events. Every event is committed before the clock stops.
process.stderr.write(`appending ${perTask * taskCount} events over ${taskCount} tasks...\n`);
let appended = 0;
const appendStarted = performance.now();
const appendCpu = process.cpuUsage();
for (let group = 0; group < taskCount; group += concurrent) {
  const running = ids.slice(group, group + concurrent);
  for (let n = 0; n < perTask; n++) {
    for (const id of running) {
      const [type, data] = eventFor(n, id);
      audit.append(id, type, data);
      appended++;
    }
    await nextTurn();
  }
}
await audit.flush();
const appendSeconds = (performance.now() - appendStarted) / 1000;
const appendCpuUsed = process.cpuUsage(appendCpu);

// Verify a 10,000-event chain (a long task).
const big = await newTask();
for (let n = 0; n < 10_000; n++) {
  const [type, data] = n === 0 ? eventFor(0, big) : eventFor(3 + (n % 8), big);
  audit.append(big, type, data);
}
await audit.flush();
const verifyRuns: number[] = [];
for (let i = 0; i < 7; i++) {
  const t0 = performance.now();
  const report = await verifyAuditChains(store, big);
  verifyRuns.push(performance.now() - t0);
  if (!report.ok || report.events !== 10_000)
    throw new Error(`verify failed: ${JSON.stringify(report.problems)}`);
}

// Task pages, through the web app with a real session and access check.
const app = webApp({
  store,
  audit,
  clock: systemClock,
  log: createLogger({ level: 'silent', redactor }),
  publicUrl: 'http://airlock.bench',
  github: {
    webUrl: emulator.webUrl,
    apiUrl: emulator.apiUrl,
    clientId: emulator.app.clientId,
    clientSecret: emulator.app.clientSecret,
  },
  sessionSecret: randomBytes(32).toString('hex'),
  sessionHours: 8,
  accessCacheSeconds: 60,
  metrics,
  metricsPublic: true,
});
emulatorOAuth(emulator.state).signInAs('alice');
const start = await app.request('/login');
const signIn = start.headers.getSetCookie()[0]!.split(';')[0]!;
const granted = await fetch(start.headers.get('location')!, { redirect: 'manual' });
const callback = new URL(granted.headers.get('location')!);
const signedIn = await app.request(callback.pathname + callback.search, { headers: { cookie: signIn } });
const cookie = signedIn.headers
  .getSetCookie()
  .find((c) => c.startsWith('airlock_session='))!
  .split(';')[0]!;
const headers = { cookie, accept: 'text/html' };
const renderPage = async (id: string) => {
  const t0 = performance.now();
  const response = await app.request(`/tasks/${id}`, { headers });
  const body = await response.text();
  const ms = performance.now() - t0;
  // The steps view: the page a reviewer opens from the PR.
  if (response.status !== 200 || !body.includes('id="task-steps"'))
    throw new Error(`page for ${id}: ${response.status}`);
  return ms;
};
await renderPage(ids[0]!); // the first page asks GitHub; the rest use the cached answer (60 s)
const pageTimes: number[] = [];
for (let i = 0; i < pageCount; i++) pageTimes.push(await renderPage(ids[(i * 7919) % ids.length]!));
const bigPageTimes: number[] = [];
for (let i = 0; i < 50; i++) bigPageTimes.push(await renderPage(big));
const listTimes: number[] = [];
for (let i = 0; i < 50; i++) {
  const t0 = performance.now();
  const r = await app.request(`/tasks?page=${1 + (i % 100)}`, { headers });
  await r.text();
  listTimes.push(performance.now() - t0);
}

const whole = await verifyAuditChains(store);
const dbBytes = (
  db.prepare('SELECT page_count * page_size AS n FROM pragma_page_count(), pragma_page_size()').get() as {
    n: number;
  }
).n;
await store.close();
await emulator.close();
await rm(dir, { recursive: true, force: true });

writeResults('audit', {
  tasks: taskCount,
  events: appended,
  append_events_per_s: Math.round(appended / appendSeconds),
  append_seconds: round(appendSeconds, 1),
  // CPU time of this process per event (user, system): the cost without other processes' load.
  append_cpu_us_per_event: {
    user: round(appendCpuUsed.user / appended),
    system: round(appendCpuUsed.system / appended),
  },
  verify_10k_ms: round(median(verifyRuns)),
  verify_10k_max_ms: round(Math.max(...verifyRuns)),
  verify_all_ok: whole.ok,
  verify_all_events: whole.events,
  task_page_p95_ms: round(quantile(pageTimes, 0.95)),
  task_page_p50_ms: round(quantile(pageTimes, 0.5)),
  task_page_events: perTask,
  task_page_10k_events_p95_ms: round(quantile(bigPageTimes, 0.95)),
  task_list_p95_ms: round(quantile(listTimes, 0.95)),
  database_mb: round(dbBytes / 1e6, 1),
  targets: { append_events_per_s: '> 20000', verify_10k_ms: '< 200', task_page_p95_ms: '< 100' },
});
