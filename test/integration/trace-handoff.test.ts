import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DeliveryLog } from '../../src/github/delivery-log.ts';
import { recordIntents } from '../../src/github/webhook-dispatch.ts';
import { WebhookInbox } from '../../src/github/webhook-inbox.ts';
import { type Dialect, openStore, type Store, type StoreLocation } from '../../src/store/database.ts';
import { enterState, recordTimeInQueue, runTaskToEnd } from '../../src/tasks/task-lifecycle.ts';
import type { TaskRunner } from '../../src/tasks/task-runner.ts';
import { TaskStore } from '../../src/tasks/task-store.ts';
import { traceParentOf, withTraceParent } from '../../src/tracing/trace-parent.ts';
import { startTracing, type Tracing } from '../../src/tracing/tracing.ts';
import { TracingSettings } from '../../src/tracing/tracing-settings.ts';
import { ManualClock } from '../helpers/manual-clock.ts';
import { memoryLogger } from '../helpers/memory-logger.ts';
import { type OtlpReceiver, spansOfTrace, startOtlpReceiver } from '../helpers/otlp-receiver.ts';
import { RecordingAudit } from '../helpers/recording-audit.ts';
import { newTaskInput } from '../helpers/task-fixture.ts';
import { createTestDatabase, DIALECTS } from '../helpers/test-store.ts';
import { examplePayload } from '../helpers/webhook-examples.ts';

let dir: string;
let receiver: OtlpReceiver;
const started: Tracing[] = [];
const opened: Store[] = [];

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'airlock-trace-handoff-'));
  receiver = await startOtlpReceiver();
});
afterEach(async () => {
  await Promise.all(started.splice(0).map((t) => t.shutdown()));
  await Promise.all(opened.splice(0).map((s) => s.close()));
  await receiver.close();
  await rm(dir, { recursive: true, force: true });
});

/** A new database of this dialect, for several processes to open: a file, or a PostgreSQL URL. */
async function sharedDatabase(dialect: Dialect): Promise<StoreLocation> {
  return dialect === 'sqlite'
    ? { file: path.join(dir, 'airlock.sqlite') }
    : { url: await createTestDatabase() };
}

/** One process's connection to the shared database. */
async function connect(where: StoreLocation): Promise<Store> {
  const store = await openStore(where);
  opened.push(store);
  return store;
}

/** A process's tracing as buildAirlock starts it, exporting to the test's receiver. */
function processTracing(role: 'control' | 'worker'): Tracing {
  const tracing = startTracing(TracingSettings.parse({ endpoint: `${receiver.endpoint}/v1/traces` }), {
    role,
  });
  started.push(tracing);
  return tracing;
}

describe.each(DIALECTS)('a trace handed over through the database, on %s', (dialect) => {
  it("carries a delivery's trace through the inbox and the delivery log to intake", async () => {
    const where = await sharedDatabase(dialect);
    const clock = new ManualClock();
    const listener = processTracing('control');
    // The listener's span, stored with the body; dispatching continues it in the span it records.
    const receive = listener.tracer.startSpan('webhook.receive');
    const stored = traceParentOf(receive);
    receive.end();
    const payload = examplePayload('issues', 'labeled', {
      repo: { id: 7, fullName: 'acme/widgets' },
      sender: { login: 'dev', id: 2 },
      installationId: 1,
    });
    const receiving = await connect(where);
    expect(
      await new WebhookInbox(receiving, clock).store('traced-1', 'issues', JSON.stringify(payload), stored),
    ).toBe('stored');
    const dispatching = await connect(where);
    const dispatch = {
      store: dispatching,
      inbox: new WebhookInbox(dispatching, clock),
      deliveries: new DeliveryLog(dispatching, clock),
      appSlug: 'airlock',
      log: memoryLogger().log,
      tracer: listener.tracer,
    };
    expect(await recordIntents(dispatch)).toBe(1);
    await listener.flush();

    // Intake, on a connection of its own, reads back the dispatch span's traceparent.
    const claimed = await new DeliveryLog(await connect(where), clock).claim();
    const trace = spansOfTrace(receiver.spans, receive.spanContext().traceId);
    const [dispatched] = trace.get('webhook.dispatch') ?? [];
    expect(dispatched).toMatchObject({
      parentSpanId: receive.spanContext().spanId,
      attributes: { 'airlock.delivery.id': 'traced-1', 'airlock.webhook.intent': 'label' },
    });
    expect(claimed?.traceParent).toBe(`00-${receive.spanContext().traceId}-${dispatched!.spanId}-01`);
  });

  it("runs a task in the trace it was created in, from the task's row, under another tracer provider", async () => {
    const where = await sharedDatabase(dialect);
    const clock = new ManualClock();
    // The control plane: intake creates the task inside its span, on its own connection and provider.
    const controlPlane = processTracing('control');
    const creator = new TaskStore(await connect(where), clock);
    const { task: created, intakeSpan } = await controlPlane.tracer.startActiveSpan(
      'delivery.intake',
      async (span) => {
        const task = await creator.create(
          newTaskInput({ context: withTraceParent({ issueTitle: 'Handed over' }) }),
        );
        span.end();
        return { task, intakeSpan: span.spanContext() };
      },
    );

    // A worker: another connection and another tracer provider; it knows the task only by its row.
    clock.advance(1500);
    const worker = processTracing('worker');
    const { log, lines } = memoryLogger();
    const deps = {
      tasks: new TaskStore(await connect(where), clock),
      audit: new RecordingAudit(),
      clock,
      tracer: worker.tracer,
      runner: {
        run: async (_task, ctx) => {
          await ctx.enterPhase('running');
          ctx.log.info('the worker runs the task');
          return { outcome: 'no_changes', summary: '' };
        },
      } satisfies TaskRunner,
    };
    const claimed = await enterState(deps, created.id, 'starting', { from: ['queued'] });
    recordTimeInQueue(worker.tracer, claimed, clock.now());
    const finished = await runTaskToEnd(deps, claimed, { signal: new AbortController().signal, log });
    expect(finished.state).toBe('succeeded');
    await Promise.all([controlPlane.flush(), worker.flush()]);

    const trace = spansOfTrace(receiver.spans, intakeSpan.traceId);
    const [intake] = trace.get('delivery.intake') ?? [];
    const [queued] = trace.get('task.queued') ?? [];
    const [run] = trace.get('task.run') ?? [];
    expect(intake?.resource['airlock.role']).toBe('control');
    expect(run?.resource['airlock.role']).toBe('worker');
    expect(run?.resource['service.instance.id']).not.toBe(intake?.resource['service.instance.id']);
    expect(run).toMatchObject({
      parentSpanId: intakeSpan.spanId,
      attributes: { 'airlock.task.id': created.id },
    });
    // Time in queue on the injected clock: from creation to the worker's claim.
    expect(queued).toMatchObject({
      parentSpanId: intakeSpan.spanId,
      attributes: { 'airlock.task.wait_ms': 1500 },
    });
    expect(queued!.endNs - queued!.startNs).toBe(1_500_000_000n);
    const line = lines.map((l) => JSON.parse(l)).find((l) => l.msg === 'the worker runs the task');
    expect(line).toMatchObject({ trace_id: intakeSpan.traceId, span_id: run!.spanId });
  });
});

it("says in airlock's log when spans cannot be exported, and stops all the same", async () => {
  const closed = await startOtlpReceiver();
  const endpoint = `${closed.endpoint}/v1/traces`;
  await closed.close();
  const { log, lines } = memoryLogger();
  const tracing = startTracing(TracingSettings.parse({ endpoint, timeoutMs: 500 }), { role: 'all', log });
  tracing.tracer.startSpan('lost').end();
  await tracing.flush();
  await tracing.shutdown();
  const warning = lines
    .map((l) => JSON.parse(l))
    .find((l) => l.msg === 'traces: spans could not be exported');
  expect(warning).toMatchObject({ level: 40, component: 'tracing', endpoint });
});
