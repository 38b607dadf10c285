// npm run bench -- webhooks [--deliveries N] [--concurrency N]
// Sends signed deliveries (triggers and noise, 5% redelivered) at the running control plane over
// loopback, then checks the database: every trigger made exactly one task, none twice.
import { parseArgs } from 'node:util';
import { startHarness } from '../test/helpers/control-plane-harness.ts';
import { examplePayload } from '../test/helpers/webhook-examples.ts';
import { quantile, round, writeResults } from './stats.ts';

const { values } = parseArgs({
  options: {
    deliveries: { type: 'string', default: '2000' },
    concurrency: { type: 'string', default: '50' },
  },
});
const total = Number(values.deliveries);
const concurrency = Number(values.concurrency);

const h = await startHarness();
// The bench measures intake, not agents: tasks that start simply wait until the bench ends.
h.runner.behaviour = (_task, ctx) =>
  new Promise((_resolve, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)));
const world = {
  repo: { id: 1, fullName: h.repo },
  sender: { login: 'alice', id: 101 },
  installationId: h.installationId,
};

type Delivery = { id: string; event: string; payload: unknown; trigger: boolean };
const unique: Delivery[] = [];
const uniqueCount = Math.round(total / 1.05);
for (let i = 0; i < uniqueCount; i++) {
  const kind = i % 4;
  if (kind === 0) {
    const issue = h.emulator.createIssue(h.repo, { title: `Bench ${i}`, user: 'alice' });
    const payload = examplePayload('issues', 'labeled', world);
    payload.issue = { ...payload.issue, number: issue.number, pull_request: undefined };
    payload.label = { ...payload.label, name: 'airlock' };
    unique.push({ id: `bench-${i}`, event: 'issues', payload, trigger: true });
  } else if (kind === 1) {
    const issue = h.emulator.createIssue(h.repo, { title: `Bench ${i}`, user: 'alice' });
    const payload = examplePayload('issue_comment', 'created', world);
    payload.issue = { ...payload.issue, number: issue.number, pull_request: undefined };
    payload.comment = {
      ...payload.comment,
      body: `/airlock please handle ${i}`,
      performed_via_github_app: null,
    };
    unique.push({ id: `bench-${i}`, event: 'issue_comment', payload, trigger: true });
  } else if (kind === 2) {
    const payload = examplePayload('issue_comment', 'created', world);
    payload.comment = { ...payload.comment, body: 'just a comment', performed_via_github_app: null };
    unique.push({ id: `bench-${i}`, event: 'issue_comment', payload, trigger: false });
  } else {
    unique.push({
      id: `bench-${i}`,
      event: 'issues',
      payload: examplePayload('issues', 'opened', world),
      trigger: false,
    });
  }
}
const all = [...unique];
while (all.length < total) all.push(unique[Math.floor((all.length * 7919) % unique.length)]!);
// A fixed shuffle, so redeliveries arrive interleaved with first deliveries, the same every run.
const order = all.map((d, i) => ({ d, key: hash(`${d.id}:${i}`) })).sort((a, b) => a.key - b.key);
all.splice(0, all.length, ...order.map((o) => o.d));

const acks: number[] = [];
let failures = 0;
let next = 0;
const started = performance.now();
await Promise.all(
  Array.from({ length: concurrency }, async () => {
    while (next < all.length) {
      const d = all[next++]!;
      const t0 = performance.now();
      const response = await h.send(d.event, d.payload, { deliveryId: d.id });
      acks.push(performance.now() - t0);
      if (response.status !== 200) failures++;
      await response.arrayBuffer();
    }
  }),
);
const seconds = (performance.now() - started) / 1000;

const deadline = Date.now() + 120_000;
while (h.plane.deliveries.pending(1).length > 0 && Date.now() < deadline)
  await new Promise((r) => setTimeout(r, 100));

const tasksExpected = unique.filter((d) => d.trigger).length;
const rows = h.db
  .prepare('SELECT delivery_id, count(*) AS n FROM tasks GROUP BY delivery_id')
  .all() as Array<{ n: number }>;
const tasksCreated = rows.length;
const duplicates = rows.filter((r) => r.n > 1).length;
await h.close();

writeResults('webhooks', {
  deliveries: all.length,
  redeliveries: all.length - unique.length,
  concurrency,
  non_200: failures,
  ack_p50_ms: round(quantile(acks, 0.5)),
  ack_p99_ms: round(quantile(acks, 0.99)),
  deliveries_per_s: round(all.length / seconds, 1),
  tasks_expected: tasksExpected,
  tasks_created: tasksCreated,
  duplicates,
  targets: { ack_p99_ms: '< 25', tasks_created: '== tasks_expected', duplicates: '== 0' },
});

function hash(s: string): number {
  let x = 2166136261;
  for (let i = 0; i < s.length; i++) x = Math.imul(x ^ s.charCodeAt(i), 16777619);
  return x >>> 0;
}
