import { type Link, SpanStatusCode, type Tracer } from '@opentelemetry/api';
import { ATTR_ERROR_TYPE } from '@opentelemetry/semantic-conventions';
import type { AuditSink } from '../audit-sink.ts';
import type { Clock } from '../clock.ts';
import { TaskStateError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { inSpan } from '../tracing/in-span.ts';
import { contextOf, spanContextOf, traceIdOf } from '../tracing/trace-parent.ts';
import type { PushGate } from './push-gate.ts';
import { isTerminal, type Task, type TaskResult, type TaskState } from './task.ts';
import { failureOutcome, TaskAbandoned, type TaskRunner, TaskTimedOut } from './task-runner.ts';
import type { TaskStore } from './task-store.ts';

/** Publishes a pushed result (opens or updates the PR); returns the result with PR details. */
export type ResultPublisher = (task: Task, result: TaskResult) => Promise<TaskResult>;

/**
 * Told of every state a task enters, after it is written and recorded in its audit chain (inside
 * the caller's transaction, if any: what it writes joins it); awaited before the change returns.
 */
export type StateListener = (task: Task) => void | Promise<void>;

/** What a task's lifecycle needs: the same parts for the app's scheduler and for local mode. */
export interface LifecycleDeps {
  tasks: TaskStore;
  audit: AuditSink;
  clock: Clock;
  runner: TaskRunner;
  /** Opens the pull request for pushed work (absent in local mode: the branch is the result). */
  publish?: ResultPublisher;
  onState?: StateListener;
  /** Holds results for approval before push, and pushes approved ones (absent in local mode). */
  pushGate?: PushGate;
  /** Starts the run's spans, in the trace the task was created in (its context's traceparent). */
  tracer: Tracer;
}

/** Records a new task's first audit events: who asked, through which delivery, and its config. */
export function recordTaskCreated(audit: AuditSink, task: Task): void {
  audit.append(task.id, 'task.created', {
    actor: { login: task.actorLogin, id: task.actorId },
    trigger: { event: task.triggerEvent, deliveryId: task.deliveryId, url: task.triggerUrl },
    repository: task.repoFullName,
    base: task.baseRef,
    branch: task.branch,
    start: task.start,
    kind: task.kind,
    issue: task.issueNumber,
    pullRequest: task.prNumber,
    instruction: task.instruction,
    parentTask: task.parentTaskId,
    // The trace the task's spans are in, to find them from the record (null: none was active).
    traceId: traceIdOf(task.context.traceParent) ?? null,
  });
  audit.append(task.id, 'task.config', { config: task.config });
  if (task.thread) {
    audit.append(task.id, 'task.thread', {
      title: task.thread.title,
      author: task.thread.author,
      updatedAt: task.thread.updatedAt,
      comments: task.thread.comments.map((c) => ({ id: c.id, author: c.author, updatedAt: c.updatedAt })),
    });
  }
}

/** Moves a task to `to`, records the change in its chain and tells the listener. */
export async function enterState(
  deps: Pick<LifecycleDeps, 'tasks' | 'audit' | 'onState'>,
  taskId: string,
  to: TaskState,
  options: { reason?: string | null; from?: readonly TaskState[] } = {},
): Promise<Task> {
  const task = await deps.tasks.transition(taskId, to, options);
  deps.audit.append(task.id, 'task.state', { state: task.state, reason: task.reason });
  await deps.onState?.(task);
  return task;
}

/**
 * Ends a task in a terminal state with its stated reason, unless it has ended already (another
 * writer may end it first: its ending stands). `from` limits the states it may end from.
 */
export async function finishTask(
  deps: Pick<LifecycleDeps, 'tasks' | 'audit' | 'onState'>,
  taskId: string,
  state: TaskState,
  reason: string,
  options: { from?: readonly TaskState[] } = {},
): Promise<Task> {
  const current = await deps.tasks.get(taskId);
  if (isTerminal(current.state)) return current;
  let finished: Task;
  try {
    finished = await deps.tasks.transition(taskId, state, { reason, ...options });
  } catch (error) {
    const now = error instanceof TaskStateError ? await deps.tasks.find(taskId) : undefined;
    if (now && isTerminal(now.state)) return now;
    throw error;
  }
  deps.audit.append(taskId, 'task.outcome', { state, reason, result: finished.result });
  deps.audit.append(taskId, 'task.state', { state: finished.state, reason: finished.reason });
  await deps.onState?.(finished);
  return finished;
}

/** The reason a succeeded task states: its outcome. */
export function successReason(result: TaskResult): string {
  if (result.outcome === 'no_changes') return 'the agent made no change';
  return result.prUrl ? `changes pushed; pull request ${result.prUrl}` : 'changes pushed';
}

/**
 * Runs a started task to its end, the one lifecycle every mode shares: the runner under the
 * task's wall-clock limit (on the injected clock), the phases it reports, publishing pushed work,
 * and exactly one terminal state with its reason. `signal` aborts it (cancel, shutdown) with
 * the reason given to abort.
 */
export async function runTaskToEnd(
  deps: LifecycleDeps,
  task: Task,
  options: { signal: AbortSignal; log: Logger },
): Promise<Task> {
  const attributes = {
    'airlock.task.id': task.id,
    'airlock.task.kind': task.kind,
    'airlock.task.attempt': task.attempt,
    'airlock.repo': task.repoFullName,
  };
  // In the trace the task was created in, whichever process created it; the runner's spans
  // (VM, proxy requests, agent, push) are its children.
  return inSpan(
    deps.tracer,
    'task.run',
    { parent: contextOf(task.context.traceParent), links: await taskRunLinks(deps, task), attributes },
    async (span) => {
      const ended = await runToEnd(deps, task, options);
      span.setAttribute('airlock.task.state', ended.state);
      // A failure is named by its kind (`agent_failed: …` → agent_failed), never its words. A
      // cancelled task, or one whose result waits for approval, did not fail.
      if (ended.state === 'failed' || ended.state === 'timed_out') {
        const kind =
          ended.state === 'failed' ? (/^(\w+):/.exec(ended.reason ?? '')?.[1] ?? 'failed') : 'timed_out';
        span.setAttribute(ATTR_ERROR_TYPE, kind);
        span.setStatus({ code: SpanStatusCode.ERROR, message: kind });
      }
      return ended;
    },
  );
}

async function runToEnd(deps: LifecycleDeps, task: Task, options: { signal: AbortSignal; log: Logger }) {
  const controller = new AbortController();
  const limitMs = task.config.timeout_minutes * 60_000;
  const cancelTimer = deps.clock.after(limitMs, () => controller.abort(new TaskTimedOut(limitMs)));
  const signal = AbortSignal.any([options.signal, controller.signal]);
  const state = async () => (await deps.tasks.get(task.id)).state;
  const enterPhase = async (phase: 'running' | 'pushing') => {
    await enterState(deps, task.id, phase);
  };
  try {
    // Cancelled (or shut down) between being started and getting here: nothing has run.
    signal.throwIfAborted();
    const context = { signal, enterPhase, log: options.log };
    // An approved held result is pushed by the host; no VM runs again.
    const releasing = (await deps.pushGate?.releasing(task.id)) ?? false;
    let result = releasing
      ? await inSpan(deps.tracer, 'git.push', { attributes: { 'airlock.push.by': 'host' } }, () =>
          (deps.pushGate as PushGate).release(task, context),
        )
      : await deps.runner.run(task, context);
    if (signal.aborted) throw signal.reason;
    if (result.outcome === 'changes_held') {
      if (!deps.pushGate) throw new Error('the runner held a result, and nothing here can keep it');
      return await deps.pushGate.hold(await deps.tasks.get(task.id), result);
    }
    if ((await state()) === 'starting') await enterPhase('running');
    if (result.outcome === 'changes_pushed' && deps.publish) {
      if ((await state()) !== 'pushing') await enterPhase('pushing');
      const publish = deps.publish;
      const pushed = result;
      result = await inSpan(deps.tracer, 'github.publish', {}, async (span) => {
        const published = await publish(await deps.tasks.get(task.id), pushed);
        if (published.prNumber) span.setAttribute('airlock.github.pull_request', published.prNumber);
        return published;
      });
    }
    await deps.tasks.update(task.id, {
      result,
      ...(result.headSha ? { headSha: result.headSha } : {}),
      ...(result.prNumber ? { prNumber: result.prNumber } : {}),
    });
    return await finishTask(deps, task.id, 'succeeded', successReason(result));
  } catch (error) {
    const why = signal.aborted ? signal.reason : error;
    // Another process holds the task now (this worker lost its lease) and recovers it: writing
    // here would race its recovery. What ran is in the record; the task is left as it stands.
    if (why instanceof TaskAbandoned) {
      options.log.error({ taskId: task.id, err: why.message }, 'task abandoned: its lease was lost');
      return deps.tasks.get(task.id);
    }
    const ended = failureOutcome(why);
    if (ended.state === 'failed') options.log.warn({ taskId: task.id, err: ended.reason }, 'task failed');
    return await finishTask(deps, task.id, ended.state, ended.reason);
  } finally {
    cancelTimer();
  }
}

/**
 * A retry, CI fix or follow-up runs in a trace of its own (its own delivery's), linked to the trace
 * of the task it continues: its parent, or the task that created the branch it works on.
 */
async function taskRunLinks(deps: Pick<LifecycleDeps, 'tasks'>, task: Task): Promise<Link[]> {
  const earlier = task.parentTaskId
    ? await deps.tasks.find(task.parentTaskId)
    : task.start.from === 'own_branch'
      ? (await deps.tasks.onBranch(task.repoFullName, task.branch))
          .filter((t) => t.id !== task.id && t.createdAt <= task.createdAt)
          .sort((a, b) => a.createdAt.localeCompare(b.createdAt))[0]
      : undefined;
  const linked = spanContextOf(earlier?.context.traceParent);
  return linked ? [{ context: linked, attributes: { 'airlock.task.id': earlier!.id } }] : [];
}

/**
 * Records how long a task waited between being created and being claimed to run (`task.queued`,
 * on the injected clock; it includes any wait for approval), in the task's trace.
 */
export function recordTimeInQueue(tracer: Tracer, task: Task, claimedAt: Date): void {
  const queuedAt = new Date(task.createdAt);
  tracer
    .startSpan(
      'task.queued',
      {
        startTime: queuedAt,
        attributes: {
          'airlock.task.id': task.id,
          'airlock.task.wait_ms': Math.max(0, claimedAt.getTime() - queuedAt.getTime()),
        },
      },
      contextOf(task.context.traceParent),
    )
    .end(claimedAt);
}

/**
 * Finishes a task whose branch was pushed before airlock stopped: its pull request is opened (or
 * updated) from what the proxy observed, and it succeeds with that outcome.
 */
export async function publishRecovered(
  deps: LifecycleDeps,
  task: Task,
  result: TaskResult,
  log: Logger,
): Promise<Task> {
  try {
    const published = deps.publish ? await deps.publish(task, result) : result;
    await deps.tasks.update(task.id, {
      result: published,
      ...(published.headSha ? { headSha: published.headSha } : {}),
      ...(published.prNumber ? { prNumber: published.prNumber } : {}),
    });
    return await finishTask(
      deps,
      task.id,
      'succeeded',
      `recovered after a restart: ${successReason(published)}`,
    );
  } catch (error) {
    const ended = failureOutcome(error);
    log.warn({ taskId: task.id, err: ended.reason }, 'recovered task could not be published');
    return finishTask(
      deps,
      task.id,
      'failed',
      `interrupted: airlock restarted after pushing ${result.headSha?.slice(0, 12)} to ${task.branch}, and opening its pull request failed (${ended.reason}). Comment \`/airlock retry\` to run it again.`,
    );
  }
}
