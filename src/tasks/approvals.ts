import type { AuditSink } from '../audit-sink.ts';
import type { RepoConfig } from '../config/repo-config.ts';
import {
  type Approval,
  ApprovalError,
  type ApprovalGate,
  type ApprovalShown,
  type ApprovalStore,
  type RunShown,
} from './approval-store.ts';
import type { Task } from './task.ts';
import { enterState, finishTask, type LifecycleDeps } from './task-lifecycle.ts';
import type { IssueThread } from './task-thread.ts';

/** What deciding approvals needs: the lifecycle's records and the approvals. */
export type ApprovalDeps = Pick<LifecycleDeps, 'tasks' | 'audit' | 'onState'> & { approvals: ApprovalStore };

/** Who decides, and where. */
export interface Approver {
  login: string;
  id: number | null;
}

/**
 * The people whose words the agent would read in a frozen thread (its author and every comment's),
 * airlock's own comments left out: airlock wrote them.
 */
export function threadAuthors(thread: IssueThread | null, appLogin: string | undefined): string[] {
  if (!thread) return [];
  const authors = [thread.author, ...thread.comments.map((c) => c.author)];
  return [...new Set(authors)].filter((a) => a.toLowerCase() !== appLogin?.toLowerCase());
}

/**
 * Why a new task must wait for approval before it runs, or undefined when it need not: always
 * with `before_run: always`; with `untrusted`, when any text the agent would read was written by
 * someone without write access (even though a person with write access asked).
 */
export function runGateReason(
  mode: RepoConfig['approval']['before_run'],
  untrustedAuthors: readonly string[],
): string | undefined {
  if (mode === 'always')
    return 'this repository asks for approval before every task runs (`approval.before_run: always`)';
  if (mode === 'untrusted' && untrustedAuthors.length > 0)
    return `the text the agent would read was written by ${untrustedAuthors.map((a) => `@${a}`).join(', ')}, without write access to this repository (\`approval.before_run: untrusted\`)`;
  return undefined;
}

/** What a run approval shows: the frozen text and the instruction, exactly as the agent gets them. */
export function runShown(
  thread: IssueThread | null,
  instruction: string | null,
  untrustedAuthors: readonly string[],
): RunShown {
  return { gate: 'run', thread, instruction, untrustedAuthors: [...untrustedAuthors] };
}

/** Records that a task waits at `gate`, in the approvals and in the task's audit chain. */
export async function requestApproval(
  deps: Pick<ApprovalDeps, 'approvals' | 'audit'>,
  task: Pick<Task, 'id' | 'config'>,
  gate: ApprovalGate,
  why: string,
  shown: ApprovalShown,
): Promise<Approval> {
  const approval = await deps.approvals.request(task.id, gate, why, shown, task.config.approval.expire_hours);
  deps.audit.append(task.id, 'approval.requested', {
    approval: approval.id,
    gate,
    why,
    shownDigest: approval.shownDigest,
    expiresAt: approval.expiresAt,
  });
  return approval;
}

/** The outcome of a decision: the task as it now is, and the settled approval. */
export interface Decided {
  task: Task;
  approval: Approval;
}

/**
 * Approves or rejects what a task waits for, as `by` (whose write access the caller has checked
 * against GitHub). `seenDigest`, when given (the web UI), must be the digest of what is waiting
 * now: a person approves exactly what they saw. With `approval.separate_approver`, the person who
 * asked cannot approve their own task (they may still reject it). Approval sends the task back to
 * the queue (to run, or to push its held result); rejection ends it (and a held result is
 * discarded when its task ends). Call inside a transaction.
 */
export async function decideApproval(
  deps: ApprovalDeps,
  input: {
    taskId: string;
    decision: 'approve' | 'reject';
    by: Approver;
    channel: 'comment' | 'web';
    seenDigest?: string;
  },
): Promise<Decided> {
  const pending = await deps.approvals.pending(input.taskId);
  if (!pending) throw new ApprovalError(`task ${input.taskId} is not waiting for approval`);
  const task = await deps.tasks.get(input.taskId);
  if (input.seenDigest !== undefined && input.seenDigest !== pending.shownDigest)
    throw new ApprovalError(
      `what task ${task.id} waits for is not what you were shown (it changed since): look again before deciding`,
    );
  if (
    input.decision === 'approve' &&
    task.config.approval.separate_approver &&
    input.by.login.toLowerCase() === task.actorLogin.toLowerCase()
  )
    throw new ApprovalError(
      `@${input.by.login} asked for task ${task.id}, and this repository requires someone else to approve it (\`approval.separate_approver: true\`)`,
    );
  const approval = await deps.approvals.decide(
    pending.id,
    { state: input.decision === 'approve' ? 'approved' : 'rejected', channel: input.channel },
    input.by,
  );
  recordDecision(deps.audit, approval);
  const what = pending.gate === 'run' ? 'to run' : 'to push its result';
  if (input.decision === 'approve') {
    const queued = await enterState(deps, task.id, 'queued', {
      reason: `approved ${what} by @${input.by.login}`,
      from: ['awaiting_approval'],
    });
    return { task: queued, approval };
  }
  const reason =
    pending.gate === 'run'
      ? `rejected by @${input.by.login}: the task did not run`
      : `rejected by @${input.by.login}: the held result was discarded and nothing was pushed`;
  return { task: await finishTask(deps, task.id, 'cancelled', reason), approval };
}

/**
 * Ends every task whose approval's time is up: the approval expires and the task is cancelled
 * with the reason (a held result is discarded when its task ends). Returns the tasks ended.
 */
export async function expireApprovals(deps: ApprovalDeps): Promise<Task[]> {
  const ended: Task[] = [];
  for (const pending of await deps.approvals.expired()) {
    const approval = await deps.approvals.decide(pending.id, { state: 'expired', channel: 'expiry' }, null);
    recordDecision(deps.audit, approval);
    const task = await deps.tasks.get(pending.taskId);
    const hours = task.config.approval.expire_hours;
    const left = pending.gate === 'push' ? '; the held result was discarded and nothing was pushed' : '';
    ended.push(
      await finishTask(
        deps,
        task.id,
        'cancelled',
        `expired: nobody with write access approved it within ${hours} hour${hours === 1 ? '' : 's'}${left}`,
      ),
    );
  }
  return ended;
}

function recordDecision(audit: AuditSink, approval: Approval): void {
  audit.append(approval.taskId, 'approval.decided', {
    approval: approval.id,
    gate: approval.gate,
    decision: approval.state,
    by: approval.decidedBy === null ? null : { login: approval.decidedBy, id: approval.decidedById },
    channel: approval.channel,
    at: approval.decidedAt,
    shownDigest: approval.shownDigest,
  });
}
