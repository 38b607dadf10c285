import type { AuditSink } from '../audit-sink.ts';
import { parseRepoConfig, REPO_CONFIG_PATH, type RepoConfig } from '../config/repo-config.ts';
import { ConfigError, errorMessage } from '../errors.ts';
import type { DeliveryLog, StoredDelivery } from '../github/delivery-log.ts';
import type { GitHubClient } from '../github/github-client.ts';
import type { GitHubJobQueue } from '../github/github-jobs.ts';
import type { Intent } from '../github/webhook-intent.ts';
import type { Logger } from '../logger.ts';
import { refusalMessage, writeAccessRefusal } from './refusals.ts';
import { isTerminal, type Task } from './task.ts';
import type { NewTask, TaskStore } from './task-store.ts';

type CommandIntent = Extract<Intent, { type: 'command' }>;
type LabelIntent = Extract<Intent, { type: 'label' }>;

/** What intake needs from the rest of the control plane. */
export interface IntakeDeps {
  deliveries: DeliveryLog;
  tasks: TaskStore;
  jobs: GitHubJobQueue;
  github: Pick<GitHubClient, 'permission' | 'fileText' | 'pull'>;
  audit: AuditSink;
  log: Logger;
  /** Cancels a queued or running task (the scheduler owns running ones). */
  cancelTask(taskId: string, reason: string): void;
  /** CI results for agent branches (issue 7); returns the outcome to record. */
  onCiResult?(intent: Extract<Intent, { type: 'ci' }>): Promise<string>;
  /** Waits while webhooks are being acknowledged (see IngressGate). */
  yieldToWebhooks?(): Promise<void>;
}

/** Outcome of processing one delivery. */
type Outcome = { status: 'done' | 'ignored' | 'refused'; outcome: string; taskId?: string };

const MAX_INTAKE_ATTEMPTS = 6;

/**
 * Turns stored deliveries into tasks: checks who asked (bots, permission, forks), reads the
 * repository's .github/airlock.yml, and creates, cancels or retries tasks. Runs after GitHub has
 * had its answer, so nothing here slows a webhook down.
 */
export async function processPendingDeliveries(deps: IntakeDeps): Promise<number> {
  const pending = deps.deliveries.pending();
  for (const delivery of pending) {
    await deps.yieldToWebhooks?.();
    const log = deps.log.child({
      deliveryId: delivery.deliveryId,
      repo: delivery.intent.origin.repo.fullName,
    });
    try {
      const result = await processDelivery(delivery, deps);
      deps.deliveries.finish(delivery.deliveryId, result.status, result.outcome, result.taskId);
      log.info(
        { status: result.status, outcome: result.outcome, taskId: result.taskId },
        'delivery processed',
      );
    } catch (error) {
      const attempts = deps.deliveries.retryLater(delivery.deliveryId, errorMessage(error));
      log.warn({ err: errorMessage(error), attempts }, 'delivery intake failed');
      if (attempts >= MAX_INTAKE_ATTEMPTS) {
        deps.deliveries.finish(
          delivery.deliveryId,
          'failed',
          `gave up after ${attempts} attempts: ${errorMessage(error)}`,
        );
      }
    }
  }
  return pending.length;
}

async function processDelivery({ intent }: StoredDelivery, deps: IntakeDeps): Promise<Outcome> {
  const installationId = intent.origin.installationId;
  if (installationId === null) return { status: 'ignored', outcome: 'no installation in payload' };
  if (intent.type === 'ci') {
    if (!deps.onCiResult) return { status: 'ignored', outcome: 'CI results are not followed' };
    return { status: 'done', outcome: await deps.onCiResult(intent) };
  }
  const repo = intent.origin.repo.fullName;
  const config = await loadConfig(deps, installationId, repo, intent.origin.repo.defaultBranch);

  if (intent.type === 'label') {
    if (config instanceof ConfigError) {
      if (intent.label !== 'airlock' && !config.message.includes(intent.label)) {
        return { status: 'ignored', outcome: 'label does not match (configuration invalid)' };
      }
      return configRefusal(deps, intent, installationId, config);
    }
    if (intent.label !== config.label)
      return { status: 'ignored', outcome: `label ${intent.label} is not ${config.label}` };
  }

  const refusal = await whoMayNot(deps, intent, installationId);
  if (refusal) {
    deps.jobs.enqueue(
      { kind: 'comment', installationId, repo, issueNumber: intent.issueNumber, body: refusal.message },
      { deliveryId: intent.origin.deliveryId },
    );
    return { status: 'refused', outcome: refusal.reason };
  }
  if (config instanceof ConfigError) return configRefusal(deps, intent, installationId, config);

  if (intent.type === 'label')
    return intent.added ? startFromLabel(deps, intent, config) : cancelFor(deps, intent);
  if (intent.command === 'cancel') return cancelFor(deps, intent);
  if (intent.command === 'retry') return retryFor(deps, intent);
  return startFromCommand(deps, intent, config);
}

async function loadConfig(
  deps: IntakeDeps,
  installationId: number,
  repo: string,
  ref: string | null,
): Promise<RepoConfig | ConfigError> {
  const text = await deps.github.fileText(installationId, repo, REPO_CONFIG_PATH, ref ?? undefined);
  try {
    return parseRepoConfig(text);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
}

function configRefusal(
  deps: IntakeDeps,
  intent: LabelIntent | CommandIntent,
  installationId: number,
  error: ConfigError,
) {
  const body = [
    `⚠️ airlock did not start: \`${REPO_CONFIG_PATH}\` is invalid.`,
    '',
    ...error.issues.map((issue) => `- ${issue}`),
    '',
    `Fix the file on the default branch and ask again. The fields are described in the airlock configuration reference.`,
  ].join('\n');
  deps.jobs.enqueue(
    {
      kind: 'comment',
      installationId,
      repo: intent.origin.repo.fullName,
      issueNumber: intent.issueNumber,
      body,
    },
    { deliveryId: intent.origin.deliveryId },
  );
  return { status: 'refused' as const, outcome: `invalid ${REPO_CONFIG_PATH}: ${error.issues.join('; ')}` };
}

/** Returns why this sender may not use airlock here, or undefined when they may. */
async function whoMayNot(
  deps: IntakeDeps,
  intent: LabelIntent | CommandIntent,
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
  if (permission !== 'admin' && permission !== 'maintain' && permission !== 'write') {
    return {
      reason: `${sender.login} has ${permission} permission`,
      message: writeAccessRefusal(sender.login, permission),
    };
  }
  return undefined;
}

function startFromLabel(deps: IntakeDeps, intent: LabelIntent, config: RepoConfig): Outcome {
  if (intent.isPullRequest) {
    return { status: 'ignored', outcome: 'labels start work on issues; on a pull request, comment /airlock' };
  }
  return createTask(deps, intent, config, {
    kind: 'issue',
    issueNumber: intent.issueNumber,
    prNumber: null,
    instruction: null,
    baseRef: intent.origin.repo.defaultBranch,
    context: { issueTitle: intent.title },
    trigger: { issueNumber: intent.issueNumber },
  });
}

async function startFromCommand(
  deps: IntakeDeps,
  intent: CommandIntent,
  config: RepoConfig,
): Promise<Outcome> {
  const installationId = intent.origin.installationId as number;
  const repo = intent.origin.repo.fullName;
  const trigger = commentTarget(intent);
  if (!intent.isPullRequest) {
    return createTask(deps, intent, config, {
      kind: 'issue',
      issueNumber: intent.issueNumber,
      prNumber: null,
      instruction: intent.instruction,
      baseRef: intent.origin.repo.defaultBranch,
      context: {
        issueTitle: intent.title,
        commentId: intent.commentId ?? undefined,
        commentKind: intent.source,
      },
      trigger,
    });
  }
  const pr: PrFields =
    intent.pr ?? toPrFields(await deps.github.pull(installationId, repo, intent.issueNumber));
  if (pr.fork && !config.allow_forks) {
    deps.jobs.enqueue(
      {
        kind: 'comment',
        installationId,
        repo,
        issueNumber: intent.issueNumber,
        body: refusalMessage('fork', intent.origin.sender.login),
      },
      { deliveryId: intent.origin.deliveryId },
    );
    return { status: 'refused', outcome: 'pull request comes from a fork' };
  }
  const ownBranch = pr.headRef.startsWith('airlock/');
  // A fork's branch lives in the fork, out of the task token's reach: such work starts from the
  // PR's head as the base repository keeps it (refs/pull/N/head) and is proposed against its base.
  const fromFork = !ownBranch && pr.fork;
  return createTask(deps, intent, config, {
    kind: ownBranch ? 'follow_up' : 'issue',
    issueNumber: null,
    prNumber: intent.issueNumber,
    instruction: intent.instruction,
    baseRef: ownBranch || fromFork ? pr.baseRef : pr.headRef,
    branch: ownBranch ? pr.headRef : undefined,
    context: {
      issueTitle: intent.title,
      commentId: intent.commentId ?? undefined,
      commentKind: intent.source,
      reviewComment: intent.reviewComment,
      headRef: pr.headRef,
      fork: pr.fork,
      ...(fromFork ? { startFrom: `refs/pull/${intent.issueNumber}/head` } : {}),
    },
    trigger,
  });
}

function createTask(
  deps: IntakeDeps,
  intent: LabelIntent | CommandIntent,
  config: RepoConfig,
  spec: Pick<NewTask, 'kind' | 'issueNumber' | 'prNumber' | 'instruction' | 'baseRef' | 'context'> & {
    branch?: string | undefined;
    trigger: { issueNumber: number } | { commentId: number; kind: 'issue_comment' | 'review_comment' };
  },
): Outcome {
  const { origin } = intent;
  const installationId = origin.installationId as number;
  const repo = origin.repo.fullName;
  if (spec.kind === 'issue' && spec.issueNumber !== null) {
    const running = deps.tasks
      .list({ repoFullName: repo, issueNumber: spec.issueNumber, limit: 20 })
      .find((t) => !isTerminal(t.state) && t.kind !== 'follow_up');
    if (running) {
      deps.jobs.enqueue({ kind: 'react', installationId, repo, target: spec.trigger, content: '+1' });
      return {
        status: 'ignored',
        outcome: `task ${running.id} is already working on this issue`,
        taskId: running.id,
      };
    }
  }
  const task = deps.tasks.create({
    installationId,
    repoFullName: repo,
    repoId: origin.repo.id,
    issueNumber: spec.issueNumber,
    prNumber: spec.prNumber,
    kind: spec.kind,
    ...(spec.branch ? { branch: spec.branch } : {}),
    baseRef: spec.baseRef,
    actorLogin: origin.sender.login,
    actorId: origin.sender.id,
    triggerEvent: `${origin.event}${origin.action ? `.${origin.action}` : ''}`,
    triggerUrl: intent.url,
    deliveryId: origin.deliveryId,
    instruction: spec.instruction,
    context: spec.context,
    config: config as unknown as Record<string, unknown>,
  });
  announce(deps, task, spec.trigger);
  return { status: 'done', outcome: `task ${task.id} queued`, taskId: task.id };
}

/** Records a new task and queues its first GitHub side effects (eyes reaction, tracking comment). */
export function announce(
  deps: { jobs: Pick<GitHubJobQueue, 'enqueue'>; audit: AuditSink },
  task: Task,
  trigger?: { issueNumber: number } | { commentId: number; kind: 'issue_comment' | 'review_comment' },
): void {
  deps.audit.append(task.id, 'task.created', {
    actor: { login: task.actorLogin, id: task.actorId },
    trigger: { event: task.triggerEvent, deliveryId: task.deliveryId, url: task.triggerUrl },
    repository: task.repoFullName,
    base: task.baseRef,
    branch: task.branch,
    kind: task.kind,
    issue: task.issueNumber,
    pullRequest: task.prNumber,
    instruction: task.instruction,
    parentTask: task.parentTaskId,
  });
  deps.audit.append(task.id, 'task.config', { config: task.config });
  if (trigger && task.installationId !== null) {
    deps.jobs.enqueue({
      kind: 'react',
      installationId: task.installationId,
      repo: task.repoFullName,
      target: trigger,
      content: 'eyes',
    });
  }
  deps.jobs.enqueue({ kind: 'tracking', taskId: task.id });
}

function cancelFor(deps: IntakeDeps, intent: LabelIntent | CommandIntent): Outcome {
  const repo = intent.origin.repo.fullName;
  const number = intent.issueNumber;
  const open = [
    ...deps.tasks.list({ repoFullName: repo, issueNumber: number, limit: 50 }),
    ...deps.tasks.list({ repoFullName: repo, prNumber: number, limit: 50 }),
  ].filter((t) => !isTerminal(t.state));
  for (const task of open) deps.cancelTask(task.id, `cancelled by ${intent.origin.sender.login}`);
  if (intent.type === 'command' && intent.origin.installationId !== null) {
    deps.jobs.enqueue({
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
}

function retryFor(deps: IntakeDeps, intent: CommandIntent): Outcome {
  const repo = intent.origin.repo.fullName;
  const number = intent.issueNumber;
  const last = [
    ...deps.tasks.list({ repoFullName: repo, issueNumber: number, limit: 50 }),
    ...deps.tasks.list({ repoFullName: repo, prNumber: number, limit: 50 }),
  ]
    .sort((a, b) => b.createdAt.localeCompare(a.createdAt))
    .find((t) => t.state === 'failed' || t.state === 'timed_out');
  const installationId = intent.origin.installationId as number;
  if (!last) {
    deps.jobs.enqueue({
      kind: 'comment',
      installationId,
      repo,
      issueNumber: number,
      body: `@${intent.origin.sender.login}, there is no failed airlock task here to retry.`,
    });
    return { status: 'ignored', outcome: 'no failed task to retry' };
  }
  const task = deps.tasks.create({
    installationId,
    repoFullName: repo,
    repoId: last.repoId,
    issueNumber: last.issueNumber,
    prNumber: last.prNumber,
    kind: 'retry',
    ...(last.kind === 'follow_up' || last.kind === 'ci_fix' ? { branch: last.branch } : {}),
    baseRef: last.baseRef,
    actorLogin: intent.origin.sender.login,
    actorId: intent.origin.sender.id,
    triggerEvent: `${intent.origin.event}.${intent.origin.action}`,
    triggerUrl: intent.url,
    deliveryId: intent.origin.deliveryId,
    instruction: last.instruction,
    context: last.context,
    config: last.config,
    parentTaskId: last.id,
    attempt: last.attempt + 1,
  });
  announce(deps, task, commentTarget(intent));
  return { status: 'done', outcome: `task ${task.id} retries ${last.id}`, taskId: task.id };
}

function commentTarget(
  intent: CommandIntent,
): { issueNumber: number } | { commentId: number; kind: 'issue_comment' | 'review_comment' } {
  if (intent.commentId === null || intent.source === 'review') return { issueNumber: intent.issueNumber };
  return {
    commentId: intent.commentId,
    kind: intent.source === 'review_comment' ? 'review_comment' : 'issue_comment',
  };
}

type PrFields = { headRef: string; headSha: string; fork: boolean; baseRef: string };

function toPrFields(pr: PrFields): PrFields {
  return { headRef: pr.headRef, headSha: pr.headSha, fork: pr.fork, baseRef: pr.baseRef };
}
