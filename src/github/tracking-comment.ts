import type { Approval } from '../tasks/approval-store.ts';
import type { Task } from '../tasks/task.ts';
import { approvalSection } from './approval-comment.ts';
import { type SpendLine, spendLine } from './spend-line.ts';
import {
  labelledUntrusted,
  untrustedCodeBlock,
  untrustedCodeSpan,
  untrustedQuote,
} from './untrusted-markdown.ts';

// How much of the agent's words, and of a branch name, a comment shows: well under GitHub's limit
// on a comment, with room for airlock's own lines.
const SUMMARY_CHARS = 3_000;
const DIFF_STAT_CHARS = 6_000;
const REASON_CHARS = 2_000;
const BRANCH_CHARS = 255;

const STATE_LINE: Record<Task['state'], string> = {
  awaiting_approval: '⏸️ Waiting for approval',
  queued: '⏳ Queued',
  starting: '🚀 Starting a microVM',
  running: '🛠️ The agent is working',
  pushing: '📤 Pushing the branch',
  succeeded: '✅ Done',
  failed: '❌ Failed',
  cancelled: '🚫 Cancelled',
  timed_out: '⌛ Timed out',
};

/** The link to a task's audit record. */
export function auditUrl(publicUrl: string, taskId: string): string {
  return `${publicUrl.replace(/\/$/, '')}/tasks/${taskId}`;
}

/** The web UI's page for deciding what a task waits for. */
export function approvalUrl(publicUrl: string, taskId: string): string {
  return `${publicUrl.replace(/\/$/, '')}/approvals/${taskId}`;
}

/** CI's verdict on the commit a task pushed, as the tracking comment shows it. */
export interface CiVerdictLine {
  headSha: string;
  verdict: 'passed' | 'failed';
  action: string;
  detail: Record<string, unknown>;
}

/** The body of a task's tracking comment, rendered from its current state. */
export function trackingCommentBody(
  task: Task,
  options: {
    publicUrl: string;
    queuedBehind?: string;
    ci?: CiVerdictLine;
    /** The approval the task waits for, when it is `awaiting_approval`. */
    approval?: Approval;
    /** What the task's model calls cost, once its proxy has closed. */
    spend?: SpendLine;
  },
): string {
  const lines = [`**airlock** · task \`${task.id}\` · ${STATE_LINE[task.state]}`, ''];
  const who = `Requested by @${task.actorLogin}`;
  const what =
    task.kind === 'follow_up' || task.kind === 'ci_fix'
      ? `follow-up on ${untrustedCodeSpan(task.branch, BRANCH_CHARS)}`
      : `branch ${untrustedCodeSpan(task.branch, BRANCH_CHARS)}`;
  lines.push(`${who} · ${what}${task.attempt > 1 ? ` · attempt ${task.attempt}` : ''}`);
  if (task.state === 'queued' && options.queuedBehind) {
    lines.push('', `Waiting for task \`${options.queuedBehind}\` on the same branch to finish.`);
  }
  if (task.state === 'awaiting_approval' && options.approval)
    lines.push('', ...approvalSection(task, options.approval, approvalUrl(options.publicUrl, task.id)));
  const changed = task.context.threadChanged;
  if (changed) {
    const what = [
      changed.edited ? 'was edited' : '',
      changed.leftOut ? `has ${changed.leftOut} comment(s) from people without write access` : '',
    ].filter(Boolean);
    lines.push(
      '',
      `ℹ️ Since it was asked for, this thread ${what.join(' and ')}: the agent works from the text as it was when the task was requested.`,
    );
  }
  if (task.state === 'succeeded' && task.result) {
    if (task.result.outcome === 'no_changes') {
      lines.push('', 'The agent made no change.');
      if (task.result.summary) lines.push('', untrustedQuote(task.result.summary, SUMMARY_CHARS));
    } else {
      if (task.result.prUrl) lines.push('', `Pull request: ${task.result.prUrl}`);
      if (task.result.summary) lines.push('', untrustedQuote(task.result.summary, SUMMARY_CHARS));
      if (task.result.diffStat)
        lines.push('', untrustedCodeBlock(task.result.diffStat.trim(), DIFF_STAT_CHARS));
    }
  }
  if (options.ci) lines.push('', ciLine(options.ci));
  if ((task.state === 'failed' || task.state === 'timed_out' || task.state === 'cancelled') && task.reason) {
    lines.push('', labelledUntrusted('Reason:', task.reason, REASON_CHARS));
    if (task.state !== 'cancelled') lines.push('', 'Comment `/airlock retry` to run it again.');
  }
  if (options.spend) lines.push('', spendLine(options.spend));
  lines.push('', `[Audit record](${auditUrl(options.publicUrl, task.id)})`);
  return lines.join('\n');
}

function ciLine(ci: CiVerdictLine): string {
  const sha = `\`${ci.headSha.slice(0, 7)}\``;
  if (ci.verdict === 'passed') return `✅ CI passed on ${sha}: ${ci.action}.`;
  const failures = typeof ci.detail.failures === 'string' ? ` (${ci.detail.failures})` : '';
  return `❌ CI failed on ${sha}${failures}: ${ci.action}`;
}
