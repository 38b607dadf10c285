import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TaskFailure } from '../../src/tasks/task-runner.ts';
import {
  type Harness,
  pushFileBehaviour,
  type RunBehaviour,
  startHarness,
} from '../helpers/control-plane-harness.ts';
import {
  type OtlpReceiver,
  type ReceivedSpan,
  spansOfTrace,
  startOtlpReceiver,
} from '../helpers/otlp-receiver.ts';
import { waitFor } from '../helpers/wait-for.ts';
import { examplePayload } from '../helpers/webhook-examples.ts';

let h: Harness;
let receiver: OtlpReceiver;

beforeEach(async () => {
  receiver = await startOtlpReceiver();
  h = await startHarness({ env: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint } });
});
afterEach(async () => {
  await h.close();
  await receiver.close();
});

function world(login = 'alice') {
  return { repo: { id: 1, fullName: h.repo }, sender: { login, id: 101 }, installationId: h.installationId };
}

function labelPayload(issueNumber: number) {
  const payload = examplePayload('issues', 'labeled', world());
  payload.issue.number = issueNumber;
  payload.issue.title = `Issue ${issueNumber}`;
  payload.issue.pull_request = undefined;
  payload.label = { ...payload.label, name: 'airlock' };
  return payload;
}

function commentPayload(issueNumber: number, body: string) {
  const payload = examplePayload('issue_comment', 'created', world());
  payload.issue.number = issueNumber;
  payload.issue.pull_request = undefined;
  payload.comment.body = body;
  payload.comment.id = 7000 + issueNumber;
  payload.comment.performed_via_github_app = null;
  return payload;
}

/** The one span of this name in the trace (failing the test when there are none or several). */
function only(trace: Map<string, ReceivedSpan[]>, name: string): ReceivedSpan {
  const spans = trace.get(name) ?? [];
  expect(spans, `spans named ${name}`).toHaveLength(1);
  return spans[0]!;
}

/** The JSON log lines airlock wrote with this message. */
function logged(message: string): Array<Record<string, unknown>> {
  return h.logLines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === message);
}

/** The root span of a delivery's trace, once the exporter has sent everything ended so far. */
async function deliverySpan(deliveryId: string): Promise<ReceivedSpan> {
  await h.airlock.tracing.flush();
  const found = receiver.spans.find(
    (s) => s.name === 'webhook.receive' && s.attributes['airlock.delivery.id'] === deliveryId,
  );
  if (!found) throw new Error(`no webhook.receive span for ${deliveryId}`);
  return found;
}

describe('a task traced from its webhook to its end', () => {
  it('is one trace: delivery, dispatch, intake, queue, run, publish and GitHub jobs, parent to child', async () => {
    const push = pushFileBehaviour('CHANGES.md', 'traced\n');
    h.runner.behaviour = async (task, ctx, harness) => {
      ctx.log.info({ taskId: task.id }, 'the runner double starts');
      return push(task, ctx, harness);
    };
    const issue = h.emulator.createIssue(h.repo, { title: 'Trace it', user: 'alice' });
    await h.send('issues', labelPayload(issue.number), { deliveryId: 'traced-1' });
    await waitFor(
      async () => (await h.plane.tasks.list())[0]?.state === 'succeeded',
      15_000,
      'task to succeed',
    );
    await h.plane.quiesce();
    const [task] = await h.plane.tasks.list();

    const receive = await deliverySpan('traced-1');
    expect(receive.parentSpanId).toBe('');
    expect(receive.attributes).toMatchObject({
      'http.request.method': 'POST',
      'http.response.status_code': 200,
      'airlock.github.event': 'issues',
      'airlock.webhook.stored': 'stored',
    });
    expect(receive.resource).toMatchObject({ 'service.name': 'airlock', 'airlock.role': 'all' });

    const trace = spansOfTrace(receiver.spans, receive.traceId);
    const dispatch = only(trace, 'webhook.dispatch');
    const intake = only(trace, 'delivery.intake');
    const queued = only(trace, 'task.queued');
    const run = only(trace, 'task.run');
    const publish = only(trace, 'github.publish');
    expect(dispatch.parentSpanId).toBe(receive.spanId);
    expect(dispatch.attributes['airlock.webhook.intent']).toBe('label');
    expect(intake.parentSpanId).toBe(dispatch.spanId);
    expect(intake.attributes).toMatchObject({
      'airlock.delivery.status': 'done',
      'airlock.task.id': task!.id,
    });
    // The task carries the intake span's context through the database to whatever runs it.
    expect(task!.context.traceParent).toBe(`00-${receive.traceId}-${intake.spanId}-01`);
    expect(queued.parentSpanId).toBe(intake.spanId);
    expect(Number(queued.attributes['airlock.task.wait_ms'])).toBeGreaterThanOrEqual(0);
    expect(queued.endNs).toBeLessThanOrEqual(run.startNs);
    expect(run.parentSpanId).toBe(intake.spanId);
    expect(run.attributes).toMatchObject({
      'airlock.task.id': task!.id,
      'airlock.task.kind': 'issue',
      'airlock.task.state': 'succeeded',
    });
    expect(run.status.code).not.toBe(2);
    expect(publish.parentSpanId).toBe(run.spanId);
    expect(publish.attributes['airlock.github.pull_request']).toBe(task!.prNumber);
    const jobs = trace.get('github.job') ?? [];
    expect(jobs.map((j) => j.attributes['airlock.github.job'])).toEqual(
      expect.arrayContaining(['tracking', 'check_run']),
    );
    for (const job of jobs) {
      expect(job.parentSpanId).toBe(intake.spanId);
      expect(job.attributes['airlock.task.id']).toBe(task!.id);
    }
    // Every span this airlock ended for the task is in this one trace, but for the CI recheck once
    // it ended: a trace of its own (a CI fix it starts is a task of its own), linked to the task's.
    const recheck = (s: ReceivedSpan) => s.attributes['airlock.github.job'] === 'ci_recheck';
    const taskSpans = receiver.spans.filter((s) => s.attributes['airlock.task.id'] === task!.id);
    expect(new Set(taskSpans.filter((s) => !recheck(s)).map((s) => s.traceId))).toEqual(
      new Set([receive.traceId]),
    );
    const [recheckSpan] = taskSpans.filter(recheck);
    expect(recheckSpan?.parentSpanId).toBe('');
    expect(recheckSpan?.traceId).not.toBe(receive.traceId);
    expect(recheckSpan?.links).toEqual([{ traceId: receive.traceId, spanId: intake.spanId, attributes: {} }]);

    // The record names the trace, and the log lines written on the way carry it.
    const created = (await h.airlock.audit.events(task!.id)).find((e) => e.type === 'task.created');
    expect(created?.data.traceId).toBe(receive.traceId);
    expect(logged('webhook accepted').find((l) => l.deliveryId === 'traced-1')).toMatchObject({
      trace_id: receive.traceId,
      span_id: dispatch.spanId,
    });
    expect(logged('delivery processed').find((l) => l.deliveryId === 'traced-1')).toMatchObject({
      trace_id: receive.traceId,
      span_id: intake.spanId,
    });
    expect(logged('the runner double starts')).toEqual([
      expect.objectContaining({ trace_id: receive.traceId, span_id: run.spanId, taskId: task!.id }),
    ]);
  });

  it('gives a retry a trace of its own, linked to the failed task it retries', async () => {
    const push = pushFileBehaviour('CHANGES.md', 'second try\n');
    let attempts = 0;
    h.runner.behaviour = (async (task, ctx, harness) => {
      attempts++;
      if (attempts === 1)
        throw new TaskFailure('agent_failed', 'the agent gave up: token sk-never-in-a-span');
      return push(task, ctx, harness);
    }) satisfies RunBehaviour;
    const issue = h.emulator.createIssue(h.repo, { title: 'Flaky', user: 'alice' });
    await h.send('issues', labelPayload(issue.number), { deliveryId: 'first-try' });
    await waitFor(async () => (await h.plane.tasks.list())[0]?.state === 'failed', 15_000, 'task to fail');
    await h.send('issue_comment', commentPayload(issue.number, '/airlock retry'), {
      deliveryId: 'retry-try',
    });
    const retry = await waitFor(async () => (await h.plane.tasks.list()).find((t) => t.kind === 'retry'));
    await waitFor(
      async () => (await h.plane.tasks.get(retry.id)).state === 'succeeded',
      15_000,
      'retry to succeed',
    );
    await h.plane.quiesce();

    const first = await deliverySpan('first-try');
    const second = await deliverySpan('retry-try');
    expect(second.traceId).not.toBe(first.traceId);
    const failedRun = only(spansOfTrace(receiver.spans, first.traceId), 'task.run');
    expect(failedRun.attributes['airlock.task.state']).toBe('failed');
    // Failed by its reason's kind; the reason's words (which may quote output) stay in the record.
    expect(failedRun.status).toEqual({ code: 2, message: 'agent_failed' });
    expect(JSON.stringify(receiver.spans.map((s) => s.attributes))).not.toContain('sk-never-in-a-span');

    const retryTrace = spansOfTrace(receiver.spans, second.traceId);
    const retryRun = only(retryTrace, 'task.run');
    const firstIntake = only(spansOfTrace(receiver.spans, first.traceId), 'delivery.intake');
    expect(retryRun.attributes['airlock.task.id']).toBe(retry.id);
    expect(retryRun.links).toEqual([
      {
        traceId: first.traceId,
        spanId: firstIntake.spanId,
        attributes: { 'airlock.task.id': (await h.plane.tasks.get(retry.parentTaskId!)).id },
      },
    ]);
    expect((await h.plane.tasks.get(retry.id)).context.traceParent).toContain(second.traceId);
  });

  it('gives a follow-up on an airlock branch a trace of its own, linked to the task that made the branch', async () => {
    const issue = h.emulator.createIssue(h.repo, { title: 'Base work', user: 'alice' });
    await h.send('issues', labelPayload(issue.number), { deliveryId: 'base-work' });
    const first = await waitFor(
      async () => (await h.plane.tasks.list()).find((t) => t.state === 'succeeded'),
      15_000,
    );
    await h.plane.quiesce();
    const pr = h.emulator.state.pulls.find((p) => p.number === first.prNumber)!;
    const payload = examplePayload('pull_request_review_comment', 'created', world());
    payload.pull_request = {
      ...payload.pull_request,
      number: pr.number,
      title: pr.title,
      head: pr.head,
      base: pr.base,
    };
    payload.comment = {
      ...payload.comment,
      body: '@airlock-test use a constant here',
      path: 'CHANGES.md',
      line: 1,
      diff_hunk: '@@ -0,0 +1 @@\n+made',
    };
    await h.send('pull_request_review_comment', payload, { deliveryId: 'review-work' });
    const followUp = await waitFor(
      async () => (await h.plane.tasks.list()).find((t) => t.kind === 'follow_up' && t.state === 'succeeded'),
      15_000,
    );
    await h.plane.quiesce();

    const base = await deliverySpan('base-work');
    const review = await deliverySpan('review-work');
    const baseIntake = only(spansOfTrace(receiver.spans, base.traceId), 'delivery.intake');
    const followUpRun = only(spansOfTrace(receiver.spans, review.traceId), 'task.run');
    expect(followUpRun.attributes['airlock.task.id']).toBe(followUp.id);
    expect(followUpRun.links).toEqual([
      { traceId: base.traceId, spanId: baseIntake.spanId, attributes: { 'airlock.task.id': first.id } },
    ]);
  });
});
