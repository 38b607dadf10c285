import type { AuditLog } from '../audit/audit-log.ts';
import { errorMessage, TaskStateError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { Store } from '../store/database.ts';
import { type OrphanReaper, type RecoveryReport, recoverTasks } from '../tasks/recovery.ts';
import { ACTIVE_STATES, type Task } from '../tasks/task.ts';
import { finishTask, type LifecycleDeps, publishRecovered } from '../tasks/task-lifecycle.ts';
import { forwardedHead, logRecovery, type TaskRuns } from '../tasks/task-runs.ts';
import { startLeaseSweeper } from './lease-sweeper.ts';
import type { TaskLeases, WorkerIdentity } from './task-leases.ts';
import { CANCEL_CHANNEL, TaskWorker } from './task-worker.ts';

/** What a lease ended unrenewed means for its task, in its reason and record. */
const LEASE_ENDED =
  'its worker stopped renewing the task’s lease (stopped, host lost or cut off from the database)';

/**
 * Tasks run by workers that lease them from a shared database (PostgreSQL): any number of
 * processes, each a control plane, a worker, or both. Every process sweeps for leases that ended
 * unrenewed and recovers their tasks by the restart rules (exactly one process takes each); a
 * worker also, at start, reaps the VMs its previous life left on this host and recovers the tasks
 * it held then, and then claims queued tasks (see TaskWorker). Without `worker` (a control plane)
 * it runs nothing itself: it tells the workers when tasks are queued and asks them to cancel.
 */
export function leasedTaskRuns(deps: {
  store: Store;
  lifecycle: LifecycleDeps;
  audit: Pick<AuditLog, 'events'>;
  leases: TaskLeases;
  log: Logger;
  /** This process's id while it recovers tasks (a worker's own id). */
  ownerId: string;
  worker?: { identity: WorkerIdentity; maxPerRepo: number; reaper: OrphanReaper; pollMs?: number };
  sweepMs?: number;
}): TaskRuns {
  const { store, lifecycle, leases, log, ownerId } = deps;
  const recoveryDeps = () => ({
    ...lifecycle,
    log,
    pushedHead: (task: Task) => forwardedHead(deps.audit, task),
  });
  // Built at start: the lifecycle is complete by then (the plane adds its publisher).
  let worker: TaskWorker | undefined;

  /** Recovers tasks this process has taken the leases of, then lets go of them. */
  const recover = async (tasks: Task[], how: { reapedVms: readonly string[]; stopped: string }) => {
    const report = await recoverTasks(recoveryDeps(), tasks, how);
    const publishing = new Set(report.toPublish.map((p) => p.task.id));
    for (const task of tasks)
      if (!publishing.has(task.id)) await leases.release(task.id, ownerId).catch(() => undefined);
    // Held while publishing: the control plane opens a pull request only for the lease's holder.
    for (const { task, result } of report.toPublish) {
      const taskLog = log.child({ taskId: task.id });
      publishRecovered(lifecycle, task, result, taskLog)
        .catch((error) => taskLog.error({ err: errorMessage(error) }, 'recovered task could not be finished'))
        .finally(() => leases.release(task.id, ownerId).catch(() => undefined));
    }
    return report;
  };

  const sweeper = startLeaseSweeper({
    leases,
    ownerId,
    log,
    ...(deps.sweepMs ? { intervalMs: deps.sweepMs } : {}),
    recover: async (tasks) => {
      await recover(tasks, { reapedVms: [], stopped: LEASE_ENDED });
    },
  });

  return {
    async start(): Promise<RecoveryReport> {
      let report: RecoveryReport = { requeued: [], failed: [], reapedVms: [], toPublish: [] };
      if (deps.worker) {
        await refuseTakenName(leases, deps.worker.identity);
        // This host's VMs from before are orphans: no process runs them now.
        const reapedVms = await deps.worker.reaper.reapOrphans();
        const mine = await leases.takeFromGone(ownerId, [deps.worker.identity.id]);
        report = await recover(mine, { reapedVms, stopped: `worker ${deps.worker.identity.id} restarted` });
        logRecovery(log, report);
        worker = new TaskWorker({
          ...lifecycle,
          store,
          leases,
          identity: deps.worker.identity,
          log,
          limits: { maxPerRepo: deps.worker.maxPerRepo },
          ...(deps.worker.pollMs ? { pollMs: deps.worker.pollMs } : {}),
        });
        await worker.start();
      }
      await sweeper.sweep();
      return report;
    },
    async tick() {
      // Other hosts' workers heard of each queued task when its write committed (TaskStore's onQueued).
      if (worker) await worker.tick();
    },
    async cancel(taskId, by) {
      if (worker?.cancelHere(taskId, by)) return;
      try {
        await finishTask(lifecycle, taskId, 'cancelled', by, { from: ['queued', 'awaiting_approval'] });
        return;
      } catch (error) {
        if (!(error instanceof TaskStateError)) throw error;
      }
      // Running on a worker: it stops the task on this notification, or on its next heartbeat.
      const asked = await store.db
        .updateTable('tasks')
        .set({ cancel_requested_by: by })
        .where('id', '=', taskId)
        .where('state', 'in', ACTIVE_STATES)
        .executeTakeFirst();
      if (Number(asked.numUpdatedRows) > 0) await store.notify(CANCEL_CHANNEL, `${taskId} ${by}`);
    },
    runningIds: () => worker?.runningIds() ?? [],
    async stop() {
      await sweeper.stop();
      await worker?.stop();
    },
  };
}

/**
 * A worker's name is its identity across restarts: at start it takes back the tasks leased under
 * it. Two live processes under one name would take each other's tasks, so a name whose holder
 * still renews its heartbeat from another host, or from another live process here, is refused.
 */
async function refuseTakenName(leases: TaskLeases, me: WorkerIdentity): Promise<void> {
  const other = (await leases.workers()).find((w) => w.id === me.id);
  if (!other || other.stoppedAt !== null) return;
  const fresh = Date.now() - Date.parse(other.heartbeatAt) < leases.leaseMs;
  const elsewhere = other.host !== me.host || (other.pid !== me.pid && processAlive(other.pid));
  if (fresh && elsewhere)
    throw new Error(
      `another worker named ${me.id} is running (host ${other.host}, pid ${other.pid}): give each worker process its own AIRLOCK_WORKER_NAME`,
    );
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
