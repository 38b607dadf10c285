import type { AuditSink } from '../audit-sink.ts';
import type { GitHubJobQueue } from '../github/github-jobs.ts';
import type { Logger } from '../logger.ts';
import type { Task } from './task.ts';
import type { TaskStore } from './task-store.ts';

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
}

/**
 * Resolves every task a previous process left in flight. Runs at start, before the scheduler:
 * reaps orphaned VMs, then re-queues tasks that had not started their agent, and fails (with a
 * reason and a retry hint) those that had, so none is lost and none runs twice.
 */
export async function recoverInFlightTasks(deps: {
  tasks: TaskStore;
  reaper: OrphanReaper;
  jobs: Pick<GitHubJobQueue, 'enqueue'>;
  audit: AuditSink;
  log: Logger;
}): Promise<RecoveryReport> {
  const reapedVms = await deps.reaper.reapOrphans();
  const report: RecoveryReport = { requeued: [], failed: [], reapedVms };
  for (const task of deps.tasks.active()) {
    const released = {
      vm: reapedVms.includes(task.id) ? 'destroyed' : 'none found',
      token: 'held in memory only; it died with the previous process and expires within an hour',
    };
    let next: Task;
    if (task.state === 'starting') {
      next = deps.tasks.transition(task.id, 'queued', {
        reason: 're-queued: airlock restarted before the agent started',
      });
      report.requeued.push(task.id);
    } else {
      next = deps.tasks.transition(task.id, 'failed', {
        reason: `interrupted: airlock restarted while the task was ${task.state}; nothing more was pushed. Comment \`/airlock retry\` to run it again.`,
      });
      report.failed.push(task.id);
    }
    deps.audit.append(task.id, 'task.recovered', {
      from: task.state,
      to: next.state,
      reason: next.reason,
      released,
    });
    deps.audit.append(task.id, 'task.state', { state: next.state, reason: next.reason });
    deps.jobs.enqueue({ kind: 'tracking', taskId: task.id });
    deps.log.warn({ taskId: task.id, from: task.state, to: next.state }, 'recovered in-flight task');
  }
  return report;
}
