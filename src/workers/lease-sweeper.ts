import { errorMessage } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { Task } from '../tasks/task.ts';
import type { TaskLeases } from './task-leases.ts';

/** A running sweep of ended leases. */
export interface LeaseSweeper {
  /** Takes and recovers the tasks whose lease ended now; returns how many. */
  sweep(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * Finds tasks whose worker stopped renewing its lease (killed, host lost, cut off from the
 * database) and hands each, exactly once across every process sweeping, to `recover`: the same
 * rules as a restart (not started → queued again; started → failed as interrupted, or its pushed
 * branch published). Runs every `intervalMs`, so a dead worker's tasks are recovered within the
 * lease plus one interval.
 */
export function startLeaseSweeper(deps: {
  leases: TaskLeases;
  /** This process's id: the sweeper holds the leases of the tasks it recovers while it does. */
  ownerId: string;
  recover(tasks: Task[]): Promise<void>;
  log: Logger;
  intervalMs?: number;
}): LeaseSweeper {
  let running: Promise<number> | null = null;
  const sweep = (): Promise<number> => {
    running ??= (async () => {
      try {
        const taken = await deps.leases.takeExpired(deps.ownerId);
        if (taken.length === 0) return 0;
        deps.log.warn(
          { tasks: taken.map((t) => t.id), from: [...new Set(taken.map((t) => t.state))] },
          'leases ended unrenewed: recovering their tasks',
        );
        await deps.recover(taken);
        return taken.length;
      } catch (error) {
        deps.log.warn({ err: errorMessage(error) }, 'sweeping ended leases failed');
        return 0;
      } finally {
        running = null;
      }
    })();
    return running;
  };
  const timer = setInterval(() => void sweep(), deps.intervalMs ?? 1000);
  timer.unref();
  return {
    sweep,
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
