import type { ChainVerdict } from '../audit/chain-verdicts.ts';
import type { Task } from '../tasks/task.ts';
import { isTerminal } from '../tasks/task.ts';
import { traceIdOf } from '../tracing/trace-parent.ts';
import { html, type SafeHtml } from './html.ts';
import { untrustedMarkdown } from './safe-markdown.ts';
import { between, duration, instant } from './time-format.ts';
import { verdictBadge } from './verdict-badge.ts';

/** A task's heading: the issue or PR title it was asked in, else its instruction's first line. */
export function taskTitle(task: Task): string {
  const title = (task.context as { issueTitle?: unknown }).issueTitle;
  if (typeof title === 'string' && title.trim()) return title.trim();
  const first = task.instruction?.split('\n').find((l) => l.trim());
  return first ? first.trim().slice(0, 120) : `Task ${task.id}`;
}

/** Who asked: a GitHub login as @login; a local run's git name as a name, never as a login. */
export function requester(task: Task, options: { short?: boolean } = {}): SafeHtml {
  if (task.kind === 'local')
    return html`${task.actorLogin} <span class="muted">(git author; local run)</span>`;
  const id =
    task.actorId !== null && !options.short ? html` <span class="muted">(id ${task.actorId})</span>` : '';
  return html`@${task.actorLogin}${id}`;
}

/** What the task is for, in a few words (list column, heading line). */
export function taskFor(task: Task): string {
  if (task.kind === 'local') return 'local run';
  // An issue's task keeps its issue's number once it has opened a pull request.
  const on =
    task.issueNumber !== null ? `#${task.issueNumber}` : task.prNumber !== null ? `PR #${task.prNumber}` : '';
  const kind = { issue: '', follow_up: 'follow-up', ci_fix: 'CI fix', retry: 'retry', local: 'local run' }[
    task.kind
  ];
  return [kind, on].filter(Boolean).join(' on ') || task.kind;
}

/** How long the task took (or has taken so far). */
export function taskDuration(task: Task, now: string): string {
  return duration(between(task.createdAt, task.finishedAt ?? now));
}

/** Links back to GitHub: the trigger, the issue, the pull request and the check run. */
function githubLinks(task: Task, webUrl: string): SafeHtml[] {
  if (task.kind === 'local') return [];
  const repo = `${webUrl}/${task.repoFullName}`;
  const links: SafeHtml[] = [];
  if (task.triggerUrl) links.push(html`<a href="${task.triggerUrl}">Trigger</a>`);
  if (task.issueNumber !== null)
    links.push(html`<a href="${repo}/issues/${task.issueNumber}">Issue #${task.issueNumber}</a>`);
  const pr = task.result?.prNumber ?? task.prNumber;
  if (pr != null)
    links.push(html`<a href="${task.result?.prUrl ?? `${repo}/pull/${pr}`}">Pull request #${pr}</a>`);
  if (task.checkRunId !== null) links.push(html`<a href="${repo}/runs/${task.checkRunId}">Check run</a>`);
  return links;
}

/** The header: title, state, verdict, the facts and the links. Re-rendered by live updates. */
export function taskHeader(options: {
  task: Task;
  verdict: ChainVerdict;
  phase: { state: string; since: string } | undefined;
  webUrl: string;
  now: string;
  view: 'steps' | 'timeline';
}): SafeHtml {
  const { task, verdict, now } = options;
  const running = !isTerminal(task.state);
  // The trace the task's spans are in (docs/observability.md), to look it up in a trace viewer.
  const traceId = traceIdOf(task.context.traceParent);
  return html`<p class="crumbs"><a href="/tasks">Tasks</a> · ${task.repoFullName} · ${task.kind === 'local' ? html`<span class="badge">local</span>` : taskFor(task)} · <code>${task.id}</code></p>
<h1>${taskTitle(task)}</h1>
<div class="badges"><span id="task-state" class="state state-${task.state}">${task.state}</span> ${verdictBadge(task.id, verdict, { long: true })}
${running && options.phase ? html`<span class="phase">${options.phase.state} for ${duration(between(options.phase.since, now))}</span>` : ''}</div>
<dl class="facts">
  <dt>Requested by</dt><dd>${requester(task)} via ${task.triggerEvent}</dd>
  <dt>Branch</dt><dd><code>${task.branch}</code>${task.baseRef ? html` from <code>${task.baseRef}</code>` : ''}</dd>
  <dt>Created</dt><dd>${instant(task.createdAt)}</dd>
  ${task.finishedAt ? html`<dt>Finished</dt><dd>${instant(task.finishedAt)}</dd>` : ''}
  <dt>${task.state === 'queued' ? 'Waiting for' : running ? 'Running for' : 'Took'}</dt><dd>${taskDuration(task, now)}</dd>
  <dt>Chain head</dt><dd><code class="hash">${verdict.headHash ?? 'no events'}</code> (${verdict.events} events)</dd>
  ${traceId ? html`<dt>Trace</dt><dd><code class="hash small" id="task-trace">${traceId}</code></dd>` : ''}
</dl>
<div class="actions">
  ${githubLinks(task, options.webUrl)}
  <a href="/tasks/${task.id}/export.json" download>Export JSON</a>
  <a href="/tasks/${task.id}/export.jsonl" download>Export JSONL</a>
</div>
<nav class="tabs" aria-label="Views">
  <a href="/tasks/${task.id}"${options.view === 'steps' ? html` aria-current="page"` : ''}>Steps</a>
  <a href="/tasks/${task.id}/timeline"${options.view === 'timeline' ? html` aria-current="page"` : ''}>Audit timeline</a>
</nav>`;
}

/** The outcome: what came of the task, and the agent's own summary (untrusted, rendered safely). */
export function taskOutcome(task: Task): SafeHtml {
  if (task.state === 'queued')
    return html`<p class="muted">Queued: waiting for a free slot. This page updates when the task starts.</p>`;
  if (!isTerminal(task.state))
    return html`<p class="muted">Running: the outcome appears here when the task ends.</p>`;
  const result = task.result;
  const pr = result?.prNumber ?? null;
  const headline =
    task.state === 'succeeded'
      ? result?.outcome === 'no_changes'
        ? 'Succeeded with no changes'
        : `Changes pushed${pr !== null ? ` (pull request #${pr})` : ''}`
      : ({ failed: 'Failed', cancelled: 'Cancelled', timed_out: 'Timed out' }[task.state as 'failed'] ??
        task.state);
  return html`<p class="outcome-line state-${task.state}"><strong>${headline}</strong>${task.reason && task.state !== 'succeeded' ? html`: ${task.reason}` : ''}</p>
${result?.summary ? html`<div class="summary"><p class="muted small">The agent's summary (its own words, not checked by airlock):</p><div class="md">${untrustedMarkdown(result.summary)}</div></div>` : ''}`;
}
