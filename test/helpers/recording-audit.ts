import type { AuditSink } from '../../src/audit-sink.ts';

/** An AuditSink that keeps events in memory, for unit tests of the parts that emit them. */
export class RecordingAudit implements AuditSink {
  readonly events: Array<{ taskId: string; type: string; data: Record<string, unknown> }> = [];
  append(taskId: string, type: string, data: Record<string, unknown>): void {
    this.events.push({ taskId, type, data });
  }
  types(taskId: string): string[] {
    return this.events.filter((e) => e.taskId === taskId).map((e) => e.type);
  }
}
