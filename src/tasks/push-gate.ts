import type { AuditEvent } from '../audit/audit-event.ts';
import type { TaskCredential } from '../github/task-token.ts';
import type { Store } from '../store/database.ts';
import type { ApprovalStore } from './approval-store.ts';
import { requestApproval } from './approvals.ts';
import type { HeldResults } from './held-results.ts';
import { splitRepo, type Task, type TaskResult } from './task.ts';
import { enterState, type LifecycleDeps } from './task-lifecycle.ts';
import { TaskFailure, type TaskRunContext } from './task-runner.ts';

/** What the push gate needs beyond the lifecycle's records. */
export interface PushGateDeps extends Pick<LifecycleDeps, 'tasks' | 'audit' | 'onState'> {
  /** The database: holding a result is one transaction. */
  store: Pick<Store, 'transaction'>;
  approvals: ApprovalStore;
  held: HeldResults;
  /** A task's record, for the commands it ran and the hosts it reached. */
  events(taskId: string): Promise<AuditEvent[]>;
  /** A fresh credential for the task's repository (minted for the approved push, then revoked). */
  credentialFor(task: Task): TaskCredential;
  gitUrl(owner: string, name: string): string;
}

/** Holds results for approval, and pushes them once approved. See {@link pushGate}. */
export interface PushGate {
  /** Whether the task's next run is the push of an approved held result. */
  releasing(taskId: string): Promise<boolean>;
  /** Keeps a held result for approval: records it and moves the task to `awaiting_approval`. */
  hold(task: Task, result: TaskResult): Promise<Task>;
  /** Pushes the approved held commit and returns the result to publish. */
  release(task: Task, ctx: TaskRunContext): Promise<TaskResult>;
}

const WHY =
  'this repository asks for approval before anything the agent wrote is pushed (`approval.before_push: always`)';

/**
 * The gate before push: a result the task's proxy held on the host waits for a person's approval
 * (what they are shown is computed on the host, from the held repository and the task's record);
 * once approved, the scheduler starts the task again and the host pushes exactly the held commit,
 * with a token minted for that push, recording the update as the host observed it.
 */
export function pushGate(deps: PushGateDeps): PushGate {
  return {
    releasing: async (taskId) => (await deps.approvals.approvedPush(taskId)) !== undefined,

    async hold(task, result) {
      if (!result.headSha) throw new TaskFailure('internal', 'a held result has no commit');
      const shown = await deps.held.hold(task, result.headSha, await deps.events(task.id));
      const held = await deps.held.get(task.id);
      deps.audit.append(task.id, 'git.held', {
        ref: `refs/heads/${task.branch}`,
        base: shown.base,
        head: shown.head,
        files: shown.files.length,
        patchSha256: shown.patchSha256,
        bundleSha256: held?.bundleSha256 ?? null,
      });
      return deps.store.transaction(async () => {
        // Not the task's headSha: that is what reached GitHub, and nothing has yet.
        await deps.tasks.update(task.id, { result });
        await requestApproval(deps, task, 'push', WHY, shown);
        return enterState(deps, task.id, 'awaiting_approval', {
          reason: 'the result is held on the host until a person approves pushing it',
          from: ['running', 'pushing'],
        });
      });
    },

    async release(task, ctx) {
      const approval = await deps.approvals.approvedPush(task.id);
      const held = await deps.held.get(task.id);
      if (!approval || !held || held.discardedAt)
        throw new TaskFailure('internal', `task ${task.id} has no approved result to push`);
      await ctx.enterPhase('pushing');
      const { owner, repo } = splitRepo(task.repoFullName);
      const credential = deps.credentialFor(task);
      let head: string;
      try {
        head = await deps.held.release(task, deps.gitUrl(owner, repo), await credential.token(), ctx.signal);
      } catch (error) {
        throw new TaskFailure(
          'push_refused',
          `the approved commit could not be pushed (did ${task.branch} move on GitHub while it waited?): ${(error as Error).message}`,
          { cause: error },
        );
      } finally {
        await credential.revoke().catch(() => undefined);
      }
      deps.audit.append(task.id, 'git.ref_update', {
        ref: `refs/heads/${task.branch}`,
        old: null,
        new: head,
        decision: 'forwarded',
        by: 'host',
        approval: approval.id,
        approvedBy: approval.decidedBy,
      });
      await deps.approvals.released(approval.id);
      const previous = task.result;
      return {
        outcome: 'changes_pushed',
        headSha: head,
        summary: previous?.summary ?? '',
        ...(previous?.diffStat ? { diffStat: previous.diffStat } : {}),
      };
    },
  };
}
