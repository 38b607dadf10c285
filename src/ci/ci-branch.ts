import type { Intent } from '../github/webhook-intent.ts';
import { isTerminal, type Task } from '../tasks/task.ts';
import type { TaskStore } from '../tasks/task-store.ts';

/**
 * The task whose pushed commit is the head of an airlock branch, if `sha` is that head. While a
 * task on the branch is still queued or running nothing is judged: the branch is about to move,
 * and airlock looks again when that task ends ({@link taskFinishedIntent}).
 */
export function branchHead(
  tasks: Pick<TaskStore, 'onBranch' | 'list'>,
  repo: string,
  branch: string | null,
  sha: string,
): { task: Task } | { why: string } {
  const name =
    branch ?? tasks.list({ repoFullName: repo, limit: 500 }).find((t) => t.headSha === sha)?.branch;
  const onBranch = name ? tasks.onBranch(repo, name) : [];
  const busy = onBranch.find((t) => !isTerminal(t.state));
  if (busy) return { why: `task ${busy.id} is still ${busy.state}` };
  const head = onBranch.findLast((t) => t.headSha !== null);
  if (!head || head.headSha !== sha) return { why: 'not the head commit of an airlock branch' };
  return { task: head };
}

/** The person who started the work on a branch (its first task), who is asked to review it. */
export function requesterOf(tasks: Pick<TaskStore, 'onBranch'>, task: Task): string | undefined {
  return tasks.onBranch(task.repoFullName, task.branch)[0]?.actorLogin;
}

/**
 * When a task on a branch with a PR ends, CI may already have finished on the branch's head (CI
 * can be faster than airlock's own bookkeeping, or a queued follow-up held the verdict back).
 * This intent, stored like a delivery, makes the intake worker judge that head once more.
 */
export function taskFinishedIntent(
  tasks: Pick<TaskStore, 'onBranch'>,
  finished: Task,
): Extract<Intent, { type: 'ci' }> | undefined {
  if (finished.installationId === null || finished.prNumber === null) return undefined;
  const head = tasks.onBranch(finished.repoFullName, finished.branch).findLast((t) => t.headSha !== null);
  if (!head?.headSha) return undefined;
  return {
    type: 'ci',
    origin: {
      deliveryId: `airlock-task-finished-${finished.id}`,
      event: 'airlock',
      action: 'task_finished',
      installationId: finished.installationId,
      repo: { fullName: finished.repoFullName, id: finished.repoId ?? 0, defaultBranch: null },
      sender: { login: finished.actorLogin, id: finished.actorId ?? 0, type: 'User' },
      fromSelf: false,
    },
    source: 'task_finished',
    headSha: head.headSha,
    headBranch: finished.branch,
    conclusion: null,
    name: `task ${finished.id}`,
    id: 0,
  };
}
