import type { Tracer } from '@opentelemetry/api';
import type { AuditSink } from '../audit-sink.ts';
import {
  configuredLabel,
  parseRepoConfig,
  REPO_CONFIG_PATH,
  type RepoConfig,
} from '../config/repo-config.ts';
import type { BuildQueue } from '../environments/build-queue.ts';
import { pushDecision, rebuildDecision } from '../environments/environment-intake.ts';
import { ConfigError, errorMessage } from '../errors.ts';
import { hasWriteAccess } from '../github/collaborator-permission.ts';
import type { ClaimedDelivery, DeliveryLog, StoredDelivery } from '../github/delivery-log.ts';
import type { GitHubClient } from '../github/github-client.ts';
import type { GitHubJobQueue, ReactionTarget } from '../github/github-jobs.ts';
import type { Intent } from '../github/webhook-intent.ts';
import type { Logger } from '../logger.ts';
import type { EffectivePolicy } from '../policy/policy-for.ts';
import { policyViolations } from '../policy/policy-violations.ts';
import type { CapReached } from '../spend/spend-ledger.ts';
import type { Store } from '../store/database.ts';
import { failSpan, inSpan } from '../tracing/in-span.ts';
import { contextOf, withTraceParent } from '../tracing/trace-parent.ts';
import { ApprovalError, type ApprovalStore, type RunShown } from './approval-store.ts';
import { decideApproval, requestApproval, runGateReason, runShown, threadAuthors } from './approvals.ts';
import { refusalMessage, writeAccessRefusal } from './refusals.ts';
import { isTerminal, type Task, type TaskStart } from './task.ts';
import { recordTaskCreated, type StateListener } from './task-lifecycle.ts';
import type { NewTask, TaskStore } from './task-store.ts';
import { freezeThread, type IssueThread } from './task-thread.ts';

type CommandIntent = Extract<Intent, { type: 'command' }>;
type LabelIntent = Extract<Intent, { type: 'label' }>;
type TriggerIntent = LabelIntent | CommandIntent;

/** What intake needs from the rest of the control plane. */
export interface IntakeDeps {
  store: Pick<Store, 'transaction'>;
  deliveries: Pick<DeliveryLog, 'claim' | 'whileClaimed' | 'finish' | 'retryLater'>;
  tasks: TaskStore;
  jobs: Pick<GitHubJobQueue, 'enqueue'>;
  github: Pick<GitHubClient, 'permission' | 'fileText' | 'pull' | 'issueThread'>;
  audit: AuditSink;
  log: Logger;
  /** Cancels a queued or running task (the scheduler owns running ones). */
  cancelTask(taskId: string, reason: string): Promise<void>;
  /** The operator policy in force for a repository: what its config may ask for. */
  rulesFor(repoFullName: string): EffectivePolicy;
  /** CI results for agent branches; returns the outcome to record. */
  onCiResult?(intent: Extract<Intent, { type: 'ci' }>): Promise<string>;
  /** Waits while webhooks are being acknowledged (see IngressGate). */
  yieldToWebhooks?(): Promise<void>;
  /** Environment builds (pushes to key files and `/airlock rebuild` queue one); absent without a sandbox. */
  environments?: Pick<BuildQueue, 'enqueue' | 'wake'>;
  approvals: ApprovalStore;
  /** airlock's own login on GitHub (`slug[bot]`): its comments in a thread are not untrusted text. */
  appLogin(): string;
  /** The monthly spend cap a new task in this repository would go past, if any. */
  spendCapReached(repoFullName: string): Promise<CapReached | undefined>;
  /** Told of each state a decision moves a task to (the lifecycle's listener). */
  onState?: StateListener;
  /** Starts each delivery's `delivery.intake` span, in the delivery's trace. */
  tracer: Tracer;
}

/** Outcome of processing one delivery. */
export type Outcome = { status: 'done' | 'ignored' | 'refused'; outcome: string; taskId?: string };

/**
 * What intake decided for a delivery, once every GitHub read is done: `commit` writes it (tasks,
 * their first audit events, GitHub jobs) and runs in one transaction with the delivery's outcome,
 * so a crash leaves either all of it or none; `afterCommit` acts on what lives outside the database
 * (aborting a running task).
 */
export interface Decision {
  commit(): Promise<Outcome>;
  afterCommit?(): void | Promise<void>;
}

export const decided = (outcome: Outcome): Decision => ({ commit: async () => outcome });

/** How many deliveries one step of intake takes in before it lets the loop look again. */
const BATCH = 50;

/**
 * Turns stored deliveries into tasks: checks who asked (bots, permission, forks), reads the
 * repository's .github/airlock.yml and the thread asked about, and creates, cancels or retries
 * tasks. Runs after GitHub has had its answer, so nothing here slows a webhook down. A delivery
 * whose GitHub reads fail waits under the queues' retry policy; none is dropped for an outage.
 */
export async function processPendingDeliveries(deps: IntakeDeps): Promise<number> {
  let taken = 0;
  while (taken < BATCH) {
    await deps.yieldToWebhooks?.();
    const delivery = await deps.deliveries.claim();
    if (!delivery) break;
    taken++;
    await takeIn(delivery, deps);
  }
  return taken;
}

/**
 * Decides what a claimed delivery asks for (GitHub reads, holding the claim meanwhile) and commits
 * the decision with the delivery's outcome in one transaction; a failure waits for a retry.
 */
async function takeIn(delivery: ClaimedDelivery, deps: IntakeDeps): Promise<void> {
  const log = deps.log.child({
    deliveryId: delivery.deliveryId,
    installation: delivery.intent.origin.installationId,
    repo: delivery.intent.origin.repo.fullName,
  });
  const attributes = {
    'airlock.delivery.id': delivery.deliveryId,
    'airlock.delivery.attempt': delivery.attempts + 1,
    'airlock.webhook.intent': delivery.intent.type,
    'airlock.repo': delivery.intent.origin.repo.fullName,
  };
  // In the delivery's trace; a task created here carries this span's traceparent.
  await inSpan(
    deps.tracer,
    'delivery.intake',
    { parent: contextOf(delivery.traceParent), attributes },
    async (span) => {
      try {
        const decision = await deps.deliveries.whileClaimed(
          delivery,
          () => decide(delivery, deps),
          (error) => log.warn({ err: errorMessage(error) }, 'delivery claim not renewed'),
        );
        const result = await deps.store.transaction(async () => {
          const outcome = await decision.commit();
          await deps.deliveries.finish(delivery, outcome.status, outcome.outcome, outcome.taskId);
          return outcome;
        });
        await decision.afterCommit?.();
        span.setAttributes({
          'airlock.delivery.status': result.status,
          ...(result.taskId ? { 'airlock.task.id': result.taskId } : {}),
        });
        log.info(
          { status: result.status, outcome: result.outcome, taskId: result.taskId },
          'delivery processed',
        );
      } catch (error) {
        const next = await deps.deliveries.retryLater(delivery, error);
        const status = !next ? 'claim_lost' : 'giveUp' in next ? 'failed' : 'retrying';
        failSpan(span, error, { 'airlock.delivery.status': status });
        if (next) log.warn({ err: errorMessage(error), ...next }, 'delivery intake failed');
        else
          log.warn({ err: errorMessage(error) }, 'delivery intake left to the process that claimed it since');
      }
    },
  );
}

async function decide(delivery: StoredDelivery, deps: IntakeDeps): Promise<Decision> {
  const { intent } = delivery;
  const installationId = intent.origin.installationId;
  if (installationId === null) return decided({ status: 'ignored', outcome: 'no installation in payload' });
  if (intent.type === 'ci') {
    if (!deps.onCiResult) return decided({ status: 'ignored', outcome: 'CI results are not followed' });
    const outcome = await deps.onCiResult(intent);
    return decided({ status: 'done', outcome });
  }
  const repo = intent.origin.repo.fullName;
  const text = await deps.github.fileText(
    installationId,
    repo,
    REPO_CONFIG_PATH,
    intent.origin.repo.defaultBranch ?? undefined,
  );
  const config = parsedConfig(text);
  if (intent.type === 'push') return pushDecision(deps, intent, config);

  if (intent.type === 'label') {
    const label = config instanceof ConfigError ? configuredLabel(text) : config.label;
    if (intent.label !== label)
      return decided({ status: 'ignored', outcome: `label ${intent.label} is not ${label}` });
  }

  const refusal = await senderRefusal(deps, intent, installationId);
  if (refusal) {
    return refuse(deps, intent, installationId, refusal.reason, refusal.message);
  }
  // A decision on a waiting task does not depend on the repository's config as it is now.
  if (intent.type === 'command' && (intent.command === 'approve' || intent.command === 'reject'))
    return approvalFor(deps, intent);
  if (config instanceof ConfigError) {
    return refuse(
      deps,
      intent,
      installationId,
      `invalid ${REPO_CONFIG_PATH}: ${config.issues.join('; ')}`,
      [
        `⚠️ airlock did not start: \`${REPO_CONFIG_PATH}\` is invalid.`,
        '',
        ...config.issues.map((issue) => `- ${issue}`),
        '',
        'Fix the file on the default branch and ask again. The fields are described in the airlock configuration reference.',
      ].join('\n'),
    );
  }

  if (intent.type === 'label' && !intent.added) return cancelFor(deps, intent);
  if (intent.type === 'command' && intent.command === 'cancel') return cancelFor(deps, intent);
  const beyond = beyondPolicy(deps, intent, installationId, config);
  if (beyond) return beyond;
  const cap = await deps.spendCapReached(repo);
  if (cap)
    return refuse(
      deps,
      intent,
      installationId,
      `monthly spend cap reached: ${cap.scope} ${cap.name}, ${cap.month}`,
      `⚠️ airlock did not start: ${cap.message}. Ask the operator of this airlock to raise the cap, or ask again after it resets.`,
    );
  if (intent.type === 'label') return startFromLabel(deps, delivery, intent, config);
  if (intent.command === 'retry') return retryFor(deps, intent);
  if (intent.command === 'rebuild') return rebuildDecision(deps, intent, config, commentTarget(intent));
  return startFromCommand(deps, delivery, intent, config);
}

function parsedConfig(text: string | undefined): RepoConfig | ConfigError {
  try {
    return parseRepoConfig(text);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
}

/** A refusal: a comment that says why, and the delivery recorded as refused. */
function refuse(
  deps: IntakeDeps,
  intent: TriggerIntent,
  installationId: number,
  reason: string,
  message: string,
): Decision {
  return {
    commit: async () => {
      await deps.jobs.enqueue(
        {
          kind: 'comment',
          installationId,
          repo: intent.origin.repo.fullName,
          issueNumber: intent.issueNumber,
          body: message,
        },
        { deliveryId: intent.origin.deliveryId },
      );
      return { status: 'refused', outcome: reason };
    },
  };
}

/**
 * A refusal when the repository's config asks for more than the operator's policy allows (a
 * comment naming each limit, and no task); undefined when it stays within it.
 */
function beyondPolicy(
  deps: IntakeDeps,
  intent: TriggerIntent,
  installationId: number,
  config: RepoConfig,
): Decision | undefined {
  const violations = policyViolations(deps.rulesFor(intent.origin.repo.fullName), config);
  if (violations.length === 0) return undefined;
  return refuse(
    deps,
    intent,
    installationId,
    `beyond the operator policy: ${violations.map((v) => v.field).join(', ')}`,
    [
      `⚠️ airlock did not start: \`${REPO_CONFIG_PATH}\` asks for more than this airlock allows.`,
      '',
      ...violations.map((v) => `- ${v.message}`),
      '',
      'Lower these in the file on the default branch, or ask the operator of this airlock to raise the limit.',
    ].join('\n'),
  );
}

/** Why this sender may not use airlock here, or undefined when they may. */
async function senderRefusal(
  deps: IntakeDeps,
  intent: TriggerIntent,
  installationId: number,
): Promise<{ reason: string; message: string } | undefined> {
  const { sender, repo } = intent.origin;
  if (sender.type !== 'User') {
    return {
      reason: `sender ${sender.login} is a ${sender.type}`,
      message: refusalMessage('bot', sender.login),
    };
  }
  const permission = await deps.github.permission(installationId, repo.fullName, sender.login);
  if (!hasWriteAccess(permission)) {
    return {
      reason: `${sender.login} has ${permission} permission`,
      message: writeAccessRefusal(sender.login, permission),
    };
  }
  return undefined;
}

async function startFromLabel(
  deps: IntakeDeps,
  delivery: StoredDelivery,
  intent: LabelIntent,
  config: RepoConfig,
): Promise<Decision> {
  if (intent.isPullRequest) {
    return decided({
      status: 'ignored',
      outcome: 'labels start work on issues; on a pull request, comment /airlock',
    });
  }
  const thread = await frozenThread(deps, delivery, intent.issueNumber);
  return createTask(deps, intent, config, {
    kind: 'issue',
    issueNumber: intent.issueNumber,
    prNumber: null,
    instruction: null,
    gate: await runGate(deps, intent, config, thread, null),
    baseRef: intent.origin.repo.defaultBranch,
    start: { from: 'ref', ref: intent.origin.repo.defaultBranch ?? 'main' },
    context: { issueTitle: intent.title },
    thread,
    trigger: { issueNumber: intent.issueNumber },
  });
}

async function startFromCommand(
  deps: IntakeDeps,
  delivery: StoredDelivery,
  intent: CommandIntent,
  config: RepoConfig,
): Promise<Decision> {
  const installationId = intent.origin.installationId as number;
  const repo = intent.origin.repo.fullName;
  const trigger = commentTarget(intent);
  const context = {
    issueTitle: intent.title,
    ...(intent.commentId !== null ? { commentId: intent.commentId } : {}),
    commentKind: intent.source,
  };
  if (!intent.isPullRequest) {
    const thread = await frozenThread(deps, delivery, intent.issueNumber);
    return createTask(deps, intent, config, {
      kind: 'issue',
      issueNumber: intent.issueNumber,
      prNumber: null,
      instruction: intent.instruction,
      baseRef: intent.origin.repo.defaultBranch,
      start: { from: 'ref', ref: intent.origin.repo.defaultBranch ?? 'main' },
      context,
      thread,
      gate: await runGate(deps, intent, config, thread, intent.instruction),
      trigger,
    });
  }
  const pr = intent.pr ?? (await deps.github.pull(installationId, repo, intent.issueNumber));
  if (pr.fork && !config.allow_forks) {
    return refuse(
      deps,
      intent,
      installationId,
      'pull request comes from a fork',
      refusalMessage('fork', intent.origin.sender.login),
    );
  }
  // Only a branch airlock itself created for this pull request is continued; a branch that
  // merely has an airlock-like name (a fork's, or one a person pushed) is never written to.
  const ownBranch = !pr.fork && (await deps.tasks.openedPull(repo, pr.headRef, intent.issueNumber));
  // A fork's branch lives in the fork, out of the task token's reach: such work starts from the
  // PR's head as the base repository keeps it (refs/pull/N/head) and is proposed against its base.
  const start: TaskStart = ownBranch
    ? { from: 'own_branch' }
    : pr.fork
      ? { from: 'pull_head', pull: intent.issueNumber }
      : { from: 'ref', ref: pr.headRef };
  const thread = await frozenThread(deps, delivery, intent.issueNumber);
  return createTask(deps, intent, config, {
    kind: ownBranch ? 'follow_up' : 'issue',
    issueNumber: null,
    prNumber: intent.issueNumber,
    instruction: intent.instruction,
    baseRef: ownBranch || pr.fork ? pr.baseRef : pr.headRef,
    ...(ownBranch ? { branch: pr.headRef } : {}),
    start,
    context: {
      ...context,
      ...(intent.reviewComment ? { reviewComment: intent.reviewComment } : {}),
      headRef: pr.headRef,
      fork: pr.fork,
    },
    thread,
    gate: await runGate(deps, intent, config, thread, intent.instruction),
    trigger,
  });
}

/** The thread as it was when the person asked: comments written after the delivery are left out. */
async function frozenThread(
  deps: IntakeDeps,
  delivery: StoredDelivery,
  number: number,
): Promise<IssueThread> {
  const { origin } = delivery.intent;
  const thread = await deps.github.issueThread(origin.installationId as number, origin.repo.fullName, number);
  return freezeThread(thread, delivery.receivedAt);
}

function createTask(
  deps: IntakeDeps,
  intent: TriggerIntent,
  config: RepoConfig,
  spec: Pick<
    NewTask,
    'kind' | 'issueNumber' | 'prNumber' | 'instruction' | 'baseRef' | 'context' | 'start' | 'thread'
  > & { branch?: string; trigger: ReactionTarget; gate: RunGate | undefined },
): Decision {
  const { origin } = intent;
  const installationId = origin.installationId as number;
  const repo = origin.repo.fullName;
  return {
    commit: async () => {
      if (spec.kind === 'issue' && spec.issueNumber !== null) {
        const working = (
          await deps.tasks.list({ repoFullName: repo, issueNumber: spec.issueNumber, limit: 20 })
        ).find((t) => !isTerminal(t.state) && t.kind !== 'follow_up');
        if (working) {
          await deps.jobs.enqueue({
            kind: 'react',
            installationId,
            repo,
            target: spec.trigger,
            content: '+1',
          });
          return {
            status: 'ignored',
            outcome: `task ${working.id} is already working on this issue`,
            taskId: working.id,
          };
        }
      }
      const task = await deps.tasks.create({
        installationId,
        repoFullName: repo,
        repoId: origin.repo.id,
        issueNumber: spec.issueNumber,
        prNumber: spec.prNumber,
        kind: spec.kind,
        ...(spec.branch ? { branch: spec.branch } : {}),
        baseRef: spec.baseRef,
        start: spec.start,
        actorLogin: origin.sender.login,
        actorId: origin.sender.id,
        triggerEvent: `${origin.event}${origin.action ? `.${origin.action}` : ''}`,
        triggerUrl: intent.url,
        deliveryId: origin.deliveryId,
        instruction: spec.instruction,
        context: withTraceParent(spec.context),
        thread: spec.thread,
        config,
        ...(spec.gate ? { state: 'awaiting_approval' as const } : {}),
      });
      await announce(deps, task, spec.trigger);
      if (spec.gate) {
        await requestApproval(deps, task, 'run', spec.gate.why, spec.gate.shown);
        return { status: 'done', outcome: `task ${task.id} awaits approval to run`, taskId: task.id };
      }
      return { status: 'done', outcome: `task ${task.id} queued`, taskId: task.id };
    },
  };
}

/** Records a new task and queues its first GitHub side effects (eyes reaction, tracking comment). */
export async function announce(
  deps: { jobs: Pick<GitHubJobQueue, 'enqueue'>; audit: AuditSink },
  task: Task,
  trigger?: ReactionTarget,
): Promise<void> {
  recordTaskCreated(deps.audit, task);
  if (trigger && task.installationId !== null) {
    await deps.jobs.enqueue({
      kind: 'react',
      installationId: task.installationId,
      repo: task.repoFullName,
      target: trigger,
      content: 'eyes',
    });
  }
  await deps.jobs.enqueue({ kind: 'tracking', taskId: task.id });
}

async function openTasksOn(deps: IntakeDeps, repo: string, number: number): Promise<Task[]> {
  return [
    ...(await deps.tasks.list({ repoFullName: repo, issueNumber: number, limit: 50 })),
    ...(await deps.tasks.list({ repoFullName: repo, prNumber: number, limit: 50 })),
  ];
}

async function cancelFor(deps: IntakeDeps, intent: TriggerIntent): Promise<Decision> {
  const repo = intent.origin.repo.fullName;
  const by = `cancelled by ${intent.origin.sender.login}`;
  const open = (await openTasksOn(deps, repo, intent.issueNumber)).filter((t) => !isTerminal(t.state));
  return {
    commit: async () => {
      if (intent.type === 'command' && intent.origin.installationId !== null) {
        await deps.jobs.enqueue({
          kind: 'react',
          installationId: intent.origin.installationId,
          repo,
          target: commentTarget(intent),
          content: open.length ? '+1' : 'confused',
        });
      }
      return open.length
        ? { status: 'done', outcome: `cancelled ${open.map((t) => t.id).join(', ')}` }
        : { status: 'ignored', outcome: 'nothing to cancel' };
    },
    afterCommit: async () => {
      for (const task of open) await deps.cancelTask(task.id, by);
    },
  };
}

/**
 * A retry is the failed task again: same start, same branch when it continued one (a new branch
 * otherwise, since the failed task may have left nothing), same text, with `parentTaskId` and the
 * next `attempt`; asked for by the person who commented.
 */
function retryFor(deps: IntakeDeps, intent: CommandIntent): Decision {
  const repo = intent.origin.repo.fullName;
  const installationId = intent.origin.installationId as number;
  return {
    commit: async () => {
      const last = (await openTasksOn(deps, repo, intent.issueNumber))
        .sort((a, b) => b.createdAt.localeCompare(a.createdAt))
        .find((t) => t.state === 'failed' || t.state === 'timed_out');
      if (!last) {
        await deps.jobs.enqueue({
          kind: 'comment',
          installationId,
          repo,
          issueNumber: intent.issueNumber,
          body: `@${intent.origin.sender.login}, there is no failed airlock task here to retry.`,
        });
        return { status: 'ignored', outcome: 'no failed task to retry' };
      }
      const task = await deps.tasks.create({
        installationId,
        repoFullName: repo,
        repoId: last.repoId,
        issueNumber: last.issueNumber,
        prNumber: last.prNumber,
        kind: 'retry',
        ...(last.start.from === 'own_branch' ? { branch: last.branch } : {}),
        baseRef: last.baseRef,
        start: last.start,
        actorLogin: intent.origin.sender.login,
        actorId: intent.origin.sender.id,
        triggerEvent: `${intent.origin.event}.${intent.origin.action}`,
        triggerUrl: intent.url,
        deliveryId: intent.origin.deliveryId,
        instruction: last.instruction,
        context: withTraceParent(last.context),
        thread: last.thread,
        config: last.config,
        parentTaskId: last.id,
        attempt: last.attempt + 1,
        // The text was approved (or trusted) for the first attempt; `always` asks every time.
        ...(last.config.approval.before_run === 'always' ? { state: 'awaiting_approval' as const } : {}),
      });
      await announce(deps, task, commentTarget(intent));
      if (task.state === 'awaiting_approval') {
        const why = runGateReason('always', []) as string;
        await requestApproval(deps, task, 'run', why, runShown(task.thread, task.instruction, []));
      }
      return { status: 'done', outcome: `task ${task.id} retries ${last.id}`, taskId: task.id };
    },
  };
}

/** Why a new task waits for approval before it runs, and what its approver is shown. */
interface RunGate {
  why: string;
  shown: RunShown;
}

/**
 * Whether a new task must be approved before it runs (see runGateReason): the authors of the
 * frozen thread are asked about on GitHub, each once.
 */
async function runGate(
  deps: IntakeDeps,
  intent: TriggerIntent,
  config: RepoConfig,
  thread: IssueThread,
  instruction: string | null,
): Promise<RunGate | undefined> {
  const mode = config.approval.before_run;
  if (mode === 'never') return undefined;
  const installationId = intent.origin.installationId as number;
  const untrusted: string[] = [];
  for (const author of threadAuthors(thread, deps.appLogin())) {
    const permission = await deps.github.permission(installationId, intent.origin.repo.fullName, author);
    if (!hasWriteAccess(permission)) untrusted.push(author);
  }
  const why = runGateReason(mode, untrusted);
  return why ? { why, shown: runShown(thread, instruction, untrusted) } : undefined;
}

/**
 * `/airlock approve` or `/airlock reject` from a person with write access (checked before): decides
 * what the tasks on this issue or pull request wait for (or the one task named), as that person,
 * through the comment channel. A refusal (nothing waits, the requester may not approve) is a reply.
 */
function approvalFor(deps: IntakeDeps, intent: CommandIntent): Decision {
  const repo = intent.origin.repo.fullName;
  const installationId = intent.origin.installationId as number;
  const decision = intent.command as 'approve' | 'reject';
  const sender = intent.origin.sender;
  const named = intent.instruction;
  const reply = (body: string) =>
    deps.jobs.enqueue({ kind: 'comment', installationId, repo, issueNumber: intent.issueNumber, body });
  return {
    commit: async () => {
      const waiting = (await openTasksOn(deps, repo, intent.issueNumber)).filter(
        (t) => t.state === 'awaiting_approval' && (named === '' || t.id === named),
      );
      if (waiting.length === 0) {
        await reply(
          `@${sender.login}, ${named ? `task \`${named}\` is not` : 'no airlock task here is'} waiting for approval.`,
        );
        return { status: 'ignored', outcome: `nothing waits for approval (${decision})` };
      }
      const done: string[] = [];
      const refused: string[] = [];
      for (const task of new Map(waiting.map((t) => [t.id, t])).values()) {
        try {
          await decideApproval(deps, {
            taskId: task.id,
            decision,
            by: { login: sender.login, id: sender.id },
            channel: 'comment',
          });
          done.push(task.id);
        } catch (error) {
          if (!(error instanceof ApprovalError)) throw error;
          refused.push(error.message);
        }
      }
      await deps.jobs.enqueue({
        kind: 'react',
        installationId,
        repo,
        target: commentTarget(intent),
        content: done.length ? '+1' : 'confused',
      });
      if (refused.length) await reply(refused.map((m) => `⚠️ ${m}`).join('\n'));
      return done.length
        ? { status: 'done', outcome: `${decision}d ${done.join(', ')} as @${sender.login}`, taskId: done[0] }
        : { status: 'refused', outcome: refused.join('; ') };
    },
  };
}

function commentTarget(intent: CommandIntent): ReactionTarget {
  if (intent.commentId === null || intent.source === 'review') return { issueNumber: intent.issueNumber };
  return {
    commentId: intent.commentId,
    kind: intent.source === 'review_comment' ? 'review_comment' : 'issue_comment',
  };
}
