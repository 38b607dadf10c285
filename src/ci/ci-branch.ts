import { isTerminal, type Task } from '../tasks/task.ts';
import type { TaskStore } from '../tasks/task-store.ts';
import type { CiHead } from './ci-follow-up.ts';

/**
 * The task whose pushed commit is the head of an airlock branch, if `sha` is that head. While a
 * task on the branch is still queued or running nothing is judged: the branch is about to move,
 * and airlock looks again when that task ends ({@link headToRecheck}).
 */
export async function branchHead(
  tasks: Pick<TaskStore, 'onBranch' | 'list'>,
  repo: string,
  branch: string | null,
  sha: string,
): Promise<{ task: Task } | { why: string }> {
  const name =
    branch ?? (await tasks.list({ repoFullName: repo, limit: 500 })).find((t) => t.headSha === sha)?.branch;
  const onBranch = name ? await tasks.onBranch(repo, name) : [];
  const busy = onBranch.find((t) => !isTerminal(t.state));
  if (busy) return { why: `task ${busy.id} is still ${busy.state}` };
  const head = onBranch.findLast((t) => t.headSha !== null);
  if (!head || head.headSha !== sha) return { why: 'not the head commit of an airlock branch' };
  return { task: head };
}

/** The person who started the work on a branch (its first task), who is asked to review it. */
export async function requesterOf(
  tasks: Pick<TaskStore, 'onBranch'>,
  task: Task,
): Promise<string | undefined> {
  return (await tasks.onBranch(task.repoFullName, task.branch))[0]?.actorLogin;
}

/**
 * When a task on a branch with a PR ends, CI may already have finished on the branch's head (CI
 * can be faster than airlock's own bookkeeping, or a queued follow-up held the verdict back).
 * Returns the head to judge once more, as a `ci_recheck` job does.
 */
export async function headToRecheck(
  tasks: Pick<TaskStore, 'onBranch'>,
  finished: Task,
): Promise<CiHead | undefined> {
  if (finished.installationId === null || finished.prNumber === null) return undefined;
  const head = (await tasks.onBranch(finished.repoFullName, finished.branch)).findLast(
    (t) => t.headSha !== null,
  );
  if (!head?.headSha) return undefined;
  return {
    installationId: finished.installationId,
    repo: { fullName: finished.repoFullName, defaultBranch: null },
    headSha: head.headSha,
    headBranch: finished.branch,
    trigger: { event: `airlock.task_finished`, deliveryId: null },
  };
}
