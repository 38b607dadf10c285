import type { Task } from '../tasks/task.ts';
import type { AuditEvent } from './audit-log.ts';
import type { VerifyReport } from './verify-chain.ts';

/** The formats a task's record exports to. */
export type ExportFormat = 'json' | 'jsonl';

/** A task's record as one JSON document: the task, its chain's state, and every event in order. */
export function taskRecordJson(task: Task, events: readonly AuditEvent[], verify: VerifyReport): string {
  const record = {
    format: 'airlock.audit.v1',
    task,
    chain: {
      events: events.length,
      headHash: events.at(-1)?.hash ?? null,
      verified: verify.ok,
      problems: verify.problems,
    },
    events,
  };
  return `${JSON.stringify(record, null, 2)}\n`;
}

/** A task's events as JSON Lines: one event per line, in chain order. */
export function taskRecordJsonl(events: readonly AuditEvent[]): string {
  return events.map((e) => `${JSON.stringify(e)}\n`).join('');
}
