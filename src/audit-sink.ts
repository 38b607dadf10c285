/** Where every part records what happened in a task; the audit log implements it. */
export interface AuditSink {
  append(taskId: string, type: string, data: Record<string, unknown>): void;
}
