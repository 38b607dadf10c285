import type { RefUpdate } from './pkt-line.ts';

/** The prefix every task branch lives under. */
export const TASK_BRANCH_PREFIX = 'refs/heads/airlock/';

const ZERO_OID = /^0+$/;

/** Whether an update may go upstream, and if not, the reason git will print. */
export type RefDecision = { allowed: true } | { allowed: false; reason: string };

/**
 * A task may create or move (forced or not) exactly its own branch, which must live under
 * `refs/heads/airlock/`. Every other ref, every deletion and every tag is refused.
 */
export function refUpdateAllowed(update: RefUpdate, taskBranch: string): RefDecision {
  const own = taskBranchRef(taskBranch);
  const limit = `airlock: pushes are limited to ${own}`;
  if (ZERO_OID.test(update.newOid)) {
    return { allowed: false, reason: `${limit}; deleting ${update.ref} is not allowed` };
  }
  if (update.ref.startsWith('refs/tags/')) {
    return { allowed: false, reason: `${limit}; tags cannot be pushed` };
  }
  if (update.ref !== own) return { allowed: false, reason: limit };
  return { allowed: true };
}

/** The full ref name of a task branch given as `airlock/…` or `refs/heads/airlock/…`. */
export function taskBranchRef(branch: string): string {
  const ref = branch.startsWith('refs/') ? branch : `refs/heads/${branch}`;
  if (!ref.startsWith(TASK_BRANCH_PREFIX) || ref.length === TASK_BRANCH_PREFIX.length) {
    throw new Error(`task branch ${branch} must be under ${TASK_BRANCH_PREFIX}`);
  }
  return ref;
}
