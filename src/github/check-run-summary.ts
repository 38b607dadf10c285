import type { Task } from '../tasks/task.ts';
import { auditUrl } from './tracking-comment.ts';
import { labelledUntrusted } from './untrusted-markdown.ts';

// The reason can carry the agent's own output: kept well under GitHub's limit on a summary.
const REASON_CHARS = 2_000;

/** The markdown summary of a task's `airlock` check run: who asked, why it ended, the audit record. */
export function checkRunSummary(
  task: Task,
  options: { publicUrl: string; auditHead?: string | undefined },
): string {
  return [
    `Requested by @${task.actorLogin}.`,
    task.reason ? labelledUntrusted('Reason:', task.reason, REASON_CHARS) : '',
    options.auditHead ? `Audit chain head: \`${options.auditHead}\`` : '',
    `Audit record: ${auditUrl(options.publicUrl, task.id)}`,
  ]
    .filter(Boolean)
    .join('\n\n');
}
