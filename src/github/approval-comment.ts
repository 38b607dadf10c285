import type { Approval, PushShown, RunShown } from '../tasks/approval-store.ts';
import type { Task } from '../tasks/task.ts';
import {
  labelledUntrusted,
  revealHidden,
  untrustedCodeBlock,
  untrustedCodeSpan,
} from './untrusted-markdown.ts';

// GitHub refuses comments over 65,536 characters: the frozen text gets most of that, and says when
// it was cut (the web UI shows all of it).
const BODY_CHARS = 24_000;
const COMMENT_CHARS = 4_000;
const THREAD_CHARS = 44_000;
const STAT_CHARS = 6_000;
const FILES_SHOWN = 50;
const COMMANDS_SHOWN = 30;
const HOSTS_SHOWN = 30;

/** The tracking comment's section for a task that waits for approval: what waits, and how to decide. */
export function approvalSection(task: Task, approval: Approval, pageUrl: string): string[] {
  const lines: string[] = [];
  if (approval.shown.gate === 'run') lines.push(...runSection(approval.shown));
  else lines.push(...pushSection(approval.shown, pageUrl));
  lines.push('', labelledUntrusted('Why:', approval.why, 1_000));
  const who = task.config.approval.separate_approver
    ? `A person with write access other than @${task.actorLogin}`
    : 'A person with write access';
  const what = approval.gate === 'run' ? 'to let it run' : 'to push it and open the pull request';
  lines.push(
    '',
    `${who} comments \`/airlock approve\` ${what}, or \`/airlock reject\` to end the task; or decides in the [web UI](${pageUrl}).`,
    `It waits until ${approval.expiresAt.replace('T', ' ').replace(/\.\d+Z$/, ' UTC')}. What is shown here has the digest \`${approval.shownDigest.slice(0, 16)}\`; the record keeps who decided on it.`,
  );
  return lines;
}

function runSection(shown: RunShown): string[] {
  const lines = [
    '⏸️ **This task waits for approval before it runs.** The agent will get exactly this text, as it was when the task was asked for (later edits and comments are not added):',
  ];
  let budget = THREAD_CHARS;
  const block = (label: string, text: string, max: number) => {
    const shownText = revealHidden(text);
    const cap = Math.max(200, Math.min(max, budget));
    budget -= Math.min(shownText.length, cap);
    const cut = Array.from(shownText).length > cap ? ' (cut here; the web UI shows all of it)' : '';
    lines.push('', `${label}${cut}`, untrustedCodeBlock(shownText, cap));
  };
  if (shown.thread) {
    const untrusted = new Set(shown.untrustedAuthors.map((a) => a.toLowerCase()));
    const mark = (author: string) =>
      `@${author}${untrusted.has(author.toLowerCase()) ? ' (no write access)' : ''}`;
    lines.push('', `Title: ${untrustedCodeSpan(revealHidden(shown.thread.title), 300)}`);
    block(`Body, by ${mark(shown.thread.author)}:`, shown.thread.body, BODY_CHARS);
    for (const comment of shown.thread.comments)
      block(`Comment ${comment.id}, by ${mark(comment.author)}:`, comment.body, COMMENT_CHARS);
  }
  if (shown.instruction) block('Instruction:', shown.instruction, COMMENT_CHARS);
  return lines;
}

function pushSection(shown: PushShown, pageUrl: string): string[] {
  const lines = [
    '⏸️ **The agent’s result waits for approval before it is pushed.** It is held on airlock’s host: nothing has reached GitHub, so no workflow has run it.',
    '',
    `Commit \`${shown.head.slice(0, 12)}\`${shown.base ? ` on \`${shown.base.slice(0, 12)}\`` : ''} · [full diff](${pageUrl}#diff)`,
  ];
  if (shown.diffStat) lines.push('', untrustedCodeBlock(shown.diffStat.trim(), STAT_CHARS));
  const files = shown.files.slice(0, FILES_SHOWN).map((f) => {
    const counts = f.added === null ? 'binary' : `+${f.added} −${f.deleted}`;
    return `- ${untrustedCodeSpan(f.path, 300)} (${counts})`;
  });
  lines.push('', `Files (${shown.files.length}):`, ...files);
  if (shown.files.length > FILES_SHOWN) lines.push(`- … and ${shown.files.length - FILES_SHOWN} more`);
  const commands = shown.commands.slice(0, COMMANDS_SHOWN);
  lines.push(
    '',
    `Commands the VM ran (${shown.commands.length}${shown.commands.length > COMMANDS_SHOWN ? `, first ${COMMANDS_SHOWN}` : ''}):`,
    commands.length ? untrustedCodeBlock(commands.join('\n'), 8_000) : '_none recorded_',
  );
  const hosts = shown.hosts.slice(0, HOSTS_SHOWN);
  lines.push(
    '',
    `Hosts reached beyond git and the model API: ${hosts.length ? hosts.map((h) => untrustedCodeSpan(h, 255)).join(', ') : 'none'}`,
  );
  return lines;
}
