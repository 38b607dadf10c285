import type { Logger } from '../logger.ts';
import type { Task, TaskResult } from './task.ts';
import { enterState, finishTask, type LifecycleDeps } from './task-lifecycle.ts';

/** Releases what crashed tasks held: VMs, overlays, proxy sockets. Implemented by the sandbox. */
export interface OrphanReaper {
  /** Destroys every VM and overlay this host left behind; returns the task ids they belonged to. */
  reapOrphans(): Promise<string[]>;
}

/** What {@link recoverInFlightTasks} did, for the log and tests. */
export interface RecoveryReport {
  requeued: string[];
  failed: string[];
  reapedVms: string[];
  /** Tasks whose branch the proxy forwarded before the stop: their pull request is still to open. */
  toPublish: Array<{ task: Task; result: TaskResult }>;
}

/** The last update of a task's own branch that its proxy forwarded upstream, from its record. */
export type PushedHead = (task: Task) => Promise<string | undefined>;

/**
 * Resolves every task a previous process left in flight. Runs at start, before the scheduler:
 * reaps orphaned VMs, re-queues tasks that had not started their agent, and fails those that had,
 * with a reason that says what was left: the proxy's record of a forwarded push tells whether the
 * branch reached GitHub. A task stopped while pushing whose push was forwarded is handed back to be
 * published; one stopped while the host pushed its approved held result is queued to push it
 * again. Tasks waiting for approval hold nothing and keep waiting. None is lost and none runs twice.
 */
export async function recoverInFlightTasks(
  deps: Pick<LifecycleDeps, 'tasks' | 'audit' | 'onState' | 'pushGate'> & {
    reaper: OrphanReaper;
    pushedHead: PushedHead;
    log: Logger;
  },
): Promise<RecoveryReport> {
  const reapedVms = await deps.reaper.reapOrphans();
  const report: RecoveryReport = { requeued: [], failed: [], reapedVms, toPublish: [] };
  for (const task of await deps.tasks.active()) {
    const pushed = await deps.pushedHead(task);
    deps.audit.append(task.id, 'task.recovered', {
      from: task.state,
      vm: reapedVms.includes(task.id) ? 'destroyed' : 'none found',
      token: 'held in memory only; it died with the previous process and expires within an hour',
      pushedHead: pushed ?? null,
    });
    if (task.state === 'starting') {
      await enterState(deps, task.id, 'queued', {
        reason: 're-queued: airlock restarted before the agent started',
      });
      report.requeued.push(task.id);
    } else if (task.state === 'pushing' && !pushed && (await deps.pushGate?.releasing(task.id))) {
      // The host was pushing an approved held result: pushing exactly that commit again is safe.
      await enterState(deps, task.id, 'queued', {
        reason: 're-queued: airlock restarted while pushing the approved result',
      });
      report.requeued.push(task.id);
    } else if (task.state === 'pushing' && pushed) {
      report.toPublish.push({
        task,
        result: { outcome: 'changes_pushed', headSha: pushed, summary: agentSummary(task) },
      });
    } else {
      const left = pushed
        ? `its branch ${task.branch} was pushed at ${pushed.slice(0, 12)} and no pull request was opened`
        : `nothing was pushed (the proxy forwarded no update of ${task.branch})`;
      await finishTask(
        deps,
        task.id,
        'failed',
        `interrupted: airlock restarted while the task was ${task.state}; ${left}. Comment \`/airlock retry\` to run it again.`,
      );
      report.failed.push(task.id);
    }
    deps.log.warn({ taskId: task.id, from: task.state, pushed: pushed ?? null }, 'recovered in-flight task');
  }
  return report;
}

function agentSummary(task: Task): string {
  return task.result?.summary ?? 'The agent finished and its branch was pushed before airlock restarted.';
}
