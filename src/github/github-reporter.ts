import type { Logger } from '../logger.ts';
import type { Task, TaskResult } from '../tasks/task.ts';
import type { TaskStore } from '../tasks/task-store.ts';
import type { GitHubClient } from './github-client.ts';
import type { GitHubJob } from './github-jobs.ts';
import { auditUrl, trackingCommentBody } from './tracking-comment.ts';

/** What the reporter needs. */
export interface GitHubReporterDeps {
  github: GitHubClient;
  tasks: TaskStore;
  publicUrl: string;
  log: Logger;
  /** The audit chain's head hash for a task, shown on its check run. */
  auditHeadHash?(taskId: string): string | undefined;
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
      case 'tracking':
        return this.#tracking(this.#deps.tasks.get(job.taskId));
      case 'check_run':
        return this.#checkRun(this.#deps.tasks.get(job.taskId));
    }
  };

  /** Opens the task's PR (draft until CI passes) or updates the existing one; returns the result with its link. */
  readonly publish = async (task: Task, result: TaskResult): Promise<TaskResult> => {
    if (task.installationId === null) return result;
    const base =
      task.kind === 'follow_up' || task.kind === 'ci_fix'
        ? (task.baseRef ?? 'main')
        : (task.baseRef ?? 'main');
    const pr = await this.#deps.github.openOrUpdatePull(task.installationId, task.repoFullName, {
      head: task.branch,
      base,
      title: pullTitle(task),
      body: pullBody(task, result, this.#deps.publicUrl),
      draft: true,
    });
    return { ...result, prNumber: pr.number, prUrl: pr.htmlUrl };
  };

  async #tracking(task: Task): Promise<void> {
    if (task.installationId === null) return;
    const number =
      task.prNumber && task.kind !== 'issue' ? task.prNumber : (task.issueNumber ?? task.prNumber);
    if (number === null) return;
    const body = trackingCommentBody(task, { publicUrl: this.#deps.publicUrl });
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
    this.#deps.tasks.update(task.id, { trackingCommentId: id });
  }

  async #checkRun(task: Task): Promise<void> {
    if (task.installationId === null || !task.headSha) return;
    const head = this.#deps.auditHeadHash?.(task.id);
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
      summary: [
        `Requested by @${task.actorLogin}.`,
        task.reason ? `Reason: ${task.reason}` : '',
        head ? `Audit chain head: \`${head}\`` : '',
        `Audit record: ${auditUrl(this.#deps.publicUrl, task.id)}`,
      ]
        .filter(Boolean)
        .join('\n\n'),
    });
    if (id !== task.checkRunId) this.#deps.tasks.update(task.id, { checkRunId: id });
  }
}

function pullTitle(task: Task): string {
  const title = (task.context as { issueTitle?: string }).issueTitle;
  return title ? `airlock: ${title}` : `airlock: task ${task.id}`;
}

/** The PR description: summary, what it closes, who asked, and the audit link. */
export function pullBody(task: Task, result: TaskResult, publicUrl: string): string {
  return [
    result.summary ? result.summary.slice(0, 4000) : 'Changes made by the airlock agent.',
    '',
    task.issueNumber !== null && task.kind !== 'follow_up' ? `Closes #${task.issueNumber}` : '',
    `Requested by @${task.actorLogin} · task \`${task.id}\` · [audit record](${auditUrl(publicUrl, task.id)})`,
    '',
    'This pull request stays a draft until CI passes.',
  ]
    .filter((l, i, all) => l !== '' || all[i - 1] !== '')
    .join('\n');
}
