import type { AuditLog } from '../audit/audit-log.ts';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { type OrphanReaper, type RecoveryReport, recoverInFlightTasks } from './recovery.ts';
import { Scheduler } from './scheduler.ts';
import type { Task } from './task.ts';
import { type LifecycleDeps, publishRecovered } from './task-lifecycle.ts';

/**
 * Where queued tasks run, as the GitHub plane sees it: in this process (the scheduler, on one
 * host) or on workers that lease them from the database (src/workers/leased-task-runs.ts). The
 * plane starts it once its webhook listener is up, wakes it when tasks may have been queued, and
 * asks it to cancel; everything else about running a task is the lifecycle's.
 */
export interface TaskRuns {
  /** Resolves what a previous process left in flight, then starts taking queued tasks. */
  start(): Promise<RecoveryReport>;
  /** Tasks may have been queued: look now (in this process, or tell the workers). */
  tick(): Promise<unknown>;
  /** Cancels a task wherever it is: a queued or waiting one at once, a running one by aborting it. */
  cancel(taskId: string, by: string): Promise<void>;
  /** Ids of the tasks running in this process. */
  runningIds(): string[];
  /** Stops taking tasks and stops those running here, waiting for their cleanup. */
  stop(): Promise<void>;
}

/** The last update of a task's own branch its proxy forwarded, from the task's record. */
export async function forwardedHead(
  audit: Pick<AuditLog, 'events'>,
  task: Task,
): Promise<string | undefined> {
  const ref = `refs/heads/${task.branch}`;
  const updates = (await audit.events(task.id, {}, { types: ['git.ref_update'] })).filter(
    (e) => e.type === 'git.ref_update' && e.data.decision === 'forwarded' && e.data.ref === ref,
  );
  const last = updates.at(-1)?.data.new;
  return typeof last === 'string' ? last : undefined;
}

/** Publishes, in the background, the recovered tasks whose branch was pushed before they stopped. */
export function publishAllRecovered(lifecycle: LifecycleDeps, report: RecoveryReport, log: Logger): void {
  for (const { task, result } of report.toPublish) {
    const taskLog = log.child({ taskId: task.id });
    publishRecovered(lifecycle, task, result, taskLog).catch((error) =>
      taskLog.error({ err: errorMessage(error) }, 'recovered task could not be finished'),
    );
  }
}

/**
 * Tasks run in this process, on one host with its own database (SQLite): at start every task left
 * active belongs to this host's previous process and is recovered (see recoverInFlightTasks);
 * then the scheduler starts queued tasks within the limits.
 */
export function localTaskRuns(deps: {
  lifecycle: LifecycleDeps;
  audit: Pick<AuditLog, 'events'>;
  reaper: OrphanReaper;
  log: Logger;
  limits: { maxConcurrent: number; maxPerRepo: number };
}): TaskRuns {
  const { lifecycle, log } = deps;
  // Built at start: the lifecycle is complete by then (the plane adds its publisher).
  let scheduler: Scheduler | undefined;
  return {
    async start() {
      const report = await recoverInFlightTasks({
        ...lifecycle,
        reaper: deps.reaper,
        log,
        pushedHead: (task) => forwardedHead(deps.audit, task),
      });
      logRecovery(log, report);
      publishAllRecovered(lifecycle, report, log);
      scheduler = new Scheduler({ ...lifecycle, log, limits: deps.limits });
      return report;
    },
    tick: async () => scheduler?.tick(),
    cancel: async (taskId, by) => {
      if (!scheduler) throw new Error('tasks cannot be cancelled before airlock has started');
      await scheduler.cancel(taskId, by);
    },
    runningIds: () => scheduler?.runningIds() ?? [],
    stop: async () => scheduler?.stop(),
  };
}

export function logRecovery(log: Logger, report: RecoveryReport): void {
  log.info(
    {
      reaped: report.reapedVms.length,
      requeued: report.requeued.length,
      failed: report.failed.length,
      toPublish: report.toPublish.length,
    },
    'recovered in-flight tasks',
  );
}
