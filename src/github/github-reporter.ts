import type { Logger } from '../logger.ts';
import type { TaskSpend } from '../spend/spend-ledger.ts';
import type { Approval } from '../tasks/approval-store.ts';
import { isTerminal, type Task, type TaskResult } from '../tasks/task.ts';
import type { TaskStore } from '../tasks/task-store.ts';
import { checkRunSummary } from './check-run-summary.ts';
import { markReadyForReview, requestReview } from './ci-client.ts';
import type { GitHubClient } from './github-client.ts';
import type { GitHubJob } from './github-jobs.ts';
import { auditUrl, type CiVerdictLine, trackingCommentBody } from './tracking-comment.ts';
import { untrustedQuote } from './untrusted-markdown.ts';

/** What the reporter needs. */
export interface GitHubReporterDeps {
  github: GitHubClient;
  tasks: TaskStore;
  publicUrl: string;
  log: Logger;
  /** The audit chain's head hash for a task, shown on its check run. */
  auditHeadHash?(taskId: string): Promise<string | undefined>;
  /** CI's verdict on the commit a task pushed, shown on its tracking comment. */
  ciVerdict?(taskId: string): Promise<CiVerdictLine | undefined>;
  /** The approval a task waits for, shown on its tracking comment. */
  approval?(taskId: string): Promise<Approval | undefined>;
  /** What a task spent on model calls, once recorded. */
  spend?(taskId: string): Promise<TaskSpend | undefined>;
}

/**
 * Everything airlock says on GitHub: reactions, refusals, the tracking comment, the `airlock`
 * check run, and the pull request. Jobs render from the task's state when they run, so a late
 * retry never posts stale news.
 */
export class GitHubReporter {
  readonly #deps: GitHubReporterDeps;

  constructor(deps: GitHubReporterDeps) {
    this.#deps = deps;
  }

  /** Executes one queued GitHub job. */
  readonly execute = async (job: GitHubJob): Promise<void> => {
    const { github } = this.#deps;
    switch (job.kind) {
      case 'react':
        return github.react(job.installationId, job.repo, job.target, job.content);
      case 'comment':
        await github.comment(job.installationId, job.repo, job.issueNumber, job.body);
        return;
      case 'commit_comment':
        await github.commitComment(job.installationId, job.repo, job.commitSha, job.body);
        return;
      case 'tracking':
        return this.#tracking(await this.#deps.tasks.get(job.taskId));
      case 'check_run':
        return this.#checkRun(await this.#deps.tasks.get(job.taskId));
      case 'ready_for_review':
        return markReadyForReview(github.octokit(job.installationId), job.pullNodeId);
      case 'request_review':
        return requestReview(github.octokit(job.installationId), job.repo, job.pullNumber, job.reviewers);
    }
  };

  /** Opens the task's PR (draft until CI passes) or updates the existing one; returns the result with its link. */
  readonly publish = async (task: Task, result: TaskResult): Promise<TaskResult> => {
    if (task.installationId === null) return result;
    // Follow-ups update the PR the branch's first task opened: its issue, its requester.
    const first = (await this.#deps.tasks.onBranch(task.repoFullName, task.branch))[0] ?? task;
    const pr = await this.#deps.github.openOrUpdatePull(task.installationId, task.repoFullName, {
      head: task.branch,
      base: task.baseRef ?? 'main',
      title: pullTitle(first),
      body: pullBody(task, result, this.#deps.publicUrl, first),
      draft: true,
    });
    return { ...result, prNumber: pr.number, prUrl: pr.htmlUrl };
  };

  async #tracking(task: Task): Promise<void> {
    if (task.installationId === null) return;
    const number =
      task.prNumber && task.kind !== 'issue' ? task.prNumber : (task.issueNumber ?? task.prNumber);
    if (number === null) return;
    const queuedBehind =
      task.state === 'queued'
        ? (await this.#deps.tasks.onBranch(task.repoFullName, task.branch)).find(
            (t) => t.id !== task.id && t.createdAt <= task.createdAt && !isTerminal(t.state),
          )?.id
        : undefined;
    const ci = await this.#deps.ciVerdict?.(task.id);
    const approval = task.state === 'awaiting_approval' ? await this.#deps.approval?.(task.id) : undefined;
    const spend = await this.#deps.spend?.(task.id);
    const body = trackingCommentBody(task, {
      publicUrl: this.#deps.publicUrl,
      ...(queuedBehind ? { queuedBehind } : {}),
      ...(ci ? { ci } : {}),
      ...(approval ? { approval } : {}),
      ...(spend ? { spend } : {}),
    });
    if (task.trackingCommentId) {
      await this.#deps.github.editComment(
        task.installationId,
        task.repoFullName,
        task.trackingCommentId,
        body,
      );
      return;
    }
    const id = await this.#deps.github.comment(task.installationId, task.repoFullName, number, body);
    await this.#deps.tasks.update(task.id, { trackingCommentId: id });
  }

  async #checkRun(task: Task): Promise<void> {
    if (task.installationId === null || !task.headSha) return;
    const head = await this.#deps.auditHeadHash?.(task.id);
    const done =
      task.state === 'succeeded' ||
      task.state === 'failed' ||
      task.state === 'cancelled' ||
      task.state === 'timed_out';
    const conclusion = (
      { succeeded: 'success', failed: 'failure', cancelled: 'cancelled', timed_out: 'timed_out' } as const
    )[task.state as 'succeeded'];
    const id = await this.#deps.github.upsertCheckRun(task.installationId, task.repoFullName, {
      id: task.checkRunId,
      headSha: task.headSha,
      status: done ? 'completed' : 'in_progress',
      ...(done ? { conclusion } : {}),
      detailsUrl: auditUrl(this.#deps.publicUrl, task.id),
      title: `airlock task ${task.id}: ${task.state}`,
      summary: checkRunSummary(task, { publicUrl: this.#deps.publicUrl, auditHead: head }),
    });
    if (id !== task.checkRunId) await this.#deps.tasks.update(task.id, { checkRunId: id });
  }
}

function followUpWhat(task: Task): string {
  if (task.kind === 'ci_fix') return `CI fix, attempt ${task.attempt}`;
  if (task.kind === 'retry') return `retry by @${task.actorLogin}`;
  return `follow-up requested by @${task.actorLogin}`;
}

function pullTitle(task: Task): string {
  const title = (task.context as { issueTitle?: string }).issueTitle;
  return title ? `airlock: ${title}` : `airlock: task ${task.id}`;
}

/**
 * The PR description: summary, what it closes, who asked, and the audit link. `first` is the task
 * that opened the PR; a follow-up keeps its `Closes` line and names its own requester too.
 */
export function pullBody(task: Task, result: TaskResult, publicUrl: string, first: Task = task): string {
  const link = (t: Task) => `task \`${t.id}\` · [audit record](${auditUrl(publicUrl, t.id)})`;
  return [
    result.summary ? untrustedQuote(result.summary, 4000) : 'Changes made by the airlock agent.',
    '',
    first.issueNumber !== null && (first.kind === 'issue' || first.kind === 'retry')
      ? `Closes #${first.issueNumber}`
      : '',
    `Requested by @${first.actorLogin} · ${link(first)}`,
    first.id === task.id ? '' : `Latest change: ${followUpWhat(task)} · ${link(task)}`,
    '',
    (task.config as { ci?: { ready_for_review?: boolean } }).ci?.ready_for_review === false
      ? 'This pull request was opened as a draft; a person marks it ready for review.'
      : 'This pull request stays a draft until CI passes.',
  ]
    .filter((l, i, all) => l !== '' || all[i - 1] !== '')
    .join('\n');
}
