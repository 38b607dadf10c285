import type { AuditEvent } from '../audit/audit-log.ts';
import type { Task } from '../tasks/task.ts';
import { TaskState } from '../tasks/task.ts';
import { eventSummary, isRefusal } from './event-summary.ts';
import { html, type SafeHtml } from './html.ts';
import type { TaskListFilter, TaskPage } from './task-query.ts';

/** Tasks per page of the list unless the query asks otherwise. */
export const DEFAULT_PER_PAGE = 50;

/** The task list: filters, a table, and pagination links that keep the filters. */
export function taskListView(
  page: TaskPage,
  filter: TaskListFilter,
  repositories: readonly string[],
): SafeHtml {
  const pages = Math.max(1, Math.ceil(page.total / page.perPage));
  const link = (n: number) => {
    const q = new URLSearchParams();
    if (filter.repo) q.set('repo', filter.repo);
    if (filter.state) q.set('state', filter.state);
    if (filter.actor) q.set('actor', filter.actor);
    if (page.perPage !== DEFAULT_PER_PAGE) q.set('per_page', String(page.perPage));
    q.set('page', String(n));
    return `/tasks?${q}`;
  };
  return html`<h1>Tasks</h1>
<form class="filters" method="get" action="/tasks" role="search" aria-label="Filter tasks">
  <label>Repository
    <select name="repo"><option value="">All repositories</option>
      ${repositories.map((r) => html`<option value="${r}"${r === filter.repo ? html` selected` : ''}>${r}</option>`)}
    </select></label>
  <label>State
    <select name="state"><option value="">Any state</option>
      ${TaskState.options.map((s) => html`<option value="${s}"${s === filter.state ? html` selected` : ''}>${s}</option>`)}
    </select></label>
  <label>Requested by <input name="actor" value="${filter.actor ?? ''}" placeholder="login" autocomplete="off"></label>
  <button type="submit">Filter</button>
</form>
<table>
  <caption>${page.total} task(s)${page.total ? `, page ${page.page} of ${pages}` : ''}</caption>
  <thead><tr><th scope="col">Task</th><th scope="col">Repository</th><th scope="col">For</th><th scope="col">State</th><th scope="col">Requested by</th><th scope="col">Created</th></tr></thead>
  <tbody>
  ${page.tasks.map(
    (t) => html`<tr>
    <td><a href="/tasks/${t.id}"><code>${t.id}</code></a></td>
    <td>${t.repoFullName}</td>
    <td>${t.issueNumber !== null ? `#${t.issueNumber}` : t.prNumber !== null ? `PR #${t.prNumber}` : t.kind}</td>
    <td><span class="state state-${t.state}">${t.state}</span></td>
    <td>@${t.actorLogin}</td>
    <td><time datetime="${t.createdAt}">${t.createdAt.replace('T', ' ').slice(0, 19)}</time></td>
  </tr>`,
  )}
  </tbody>
</table>
${page.tasks.length === 0 ? html`<p>No tasks match, or none you can see: you see a repository's tasks while GitHub says you can read it.</p>` : ''}
<nav class="pager" aria-label="Pages">
  ${page.page > 1 ? html`<a href="${link(page.page - 1)}" rel="prev">Newer</a>` : ''}
  ${page.page < pages ? html`<a href="${link(page.page + 1)}" rel="next">Older</a>` : ''}
</nav>`;
}

/** One timeline row (also streamed to the page by live updates). */
export function timelineRow(event: AuditEvent): SafeHtml {
  return html`<tr id="e${event.seq}"${isRefusal(event) ? html` class="refused"` : ''}>
  <td class="num">${event.seq}</td>
  <td class="when"><time datetime="${event.ts}">${event.ts.slice(11, 23)}</time></td>
  <td class="type"><code>${event.type}</code></td>
  <td>${eventSummary(event)}<details><summary>details</summary><pre>${JSON.stringify(
    {
      data: event.data,
      ...(event.content ? { content: event.content } : {}),
      hash: event.hash,
      prevHash: event.prevHash,
    },
    null,
    2,
  )}</pre></details></td>
</tr>`;
}

/** Links back to GitHub: the trigger, the issue, the pull request and the check run. */
function githubLinks(task: Task, webUrl: string): SafeHtml[] {
  const repo = `${webUrl}/${task.repoFullName}`;
  const links: SafeHtml[] = [];
  if (task.triggerUrl) links.push(html`<a href="${task.triggerUrl}">Trigger</a>`);
  if (task.issueNumber !== null)
    links.push(html`<a href="${repo}/issues/${task.issueNumber}">Issue #${task.issueNumber}</a>`);
  if (task.prNumber !== null)
    links.push(html`<a href="${repo}/pull/${task.prNumber}">Pull request #${task.prNumber}</a>`);
  if (task.checkRunId !== null) links.push(html`<a href="${repo}/runs/${task.checkRunId}">Check run</a>`);
  return links;
}

function diffView(diff: AuditEvent | undefined): SafeHtml {
  if (!diff) return html`<p>No diff recorded (yet).</p>`;
  const patch = String(diff.data.patch ?? '');
  const lines = patch.split('\n').map((line) => {
    const cls = line.startsWith('@@')
      ? 'hunk'
      : line.startsWith('+') && !line.startsWith('+++')
        ? 'add'
        : line.startsWith('-') && !line.startsWith('---')
          ? 'del'
          : '';
    return cls ? html`<span class="${cls}">${line}</span>\n` : html`${line}\n`;
  });
  return html`<pre aria-label="Diff stat">${String(diff.data.stat ?? '')}</pre>
<details open><summary>Patch (${String(diff.data.base ?? '').slice(0, 8)}…${String(diff.data.head ?? '').slice(0, 8)})</summary><pre class="diff" aria-label="Patch">${lines}</pre></details>`;
}

/** The task page: facts, links, the diff, the chain head and the timeline. */
export function taskView(options: {
  task: Task;
  events: readonly AuditEvent[];
  diff: AuditEvent | undefined;
  headHash: string | undefined;
  totalEvents: number;
  nextAfter: number | undefined;
  webUrl: string;
  live: boolean;
}): SafeHtml {
  const { task, events } = options;
  const lastSeq = events.at(-1)?.seq ?? 0;
  return html`<h1>Task <code>${task.id}</code> <span id="task-state" class="state state-${task.state}">${task.state}</span></h1>
<dl class="facts">
  <dt>Repository</dt><dd>${task.repoFullName}</dd>
  <dt>Requested by</dt><dd>@${task.actorLogin}${task.actorId !== null ? ` (id ${task.actorId})` : ''} via ${task.triggerEvent}</dd>
  <dt>Branch</dt><dd><code>${task.branch}</code>${task.baseRef ? html` from <code>${task.baseRef}</code>` : ''}</dd>
  <dt>Created</dt><dd><time datetime="${task.createdAt}">${task.createdAt}</time></dd>
  ${task.finishedAt ? html`<dt>Finished</dt><dd><time datetime="${task.finishedAt}">${task.finishedAt}</time></dd>` : ''}
  ${task.reason ? html`<dt>Reason</dt><dd>${task.reason}</dd>` : ''}
  ${task.result ? html`<dt>Outcome</dt><dd>${task.result.outcome}${task.result.summary ? `: ${task.result.summary}` : ''}</dd>` : ''}
  <dt>Chain head</dt><dd><code class="hash">${options.headHash ?? 'no events'}</code> (${options.totalEvents} events)</dd>
</dl>
<div class="actions">
  ${githubLinks(task, options.webUrl)}
  <a href="/tasks/${task.id}/export.json" download>Export JSON</a>
  <a href="/tasks/${task.id}/export.jsonl" download>Export JSONL</a>
</div>
<h2>Diff</h2>
${diffView(options.diff)}
<h2>Timeline</h2>
${options.live ? html`<p class="live" id="live-status" role="status">Running: new events appear as they are recorded.</p>` : ''}
<table${options.live ? html` data-live="/tasks/${task.id}/live?after=${lastSeq}"` : ''}>
  <caption>Audit events in chain order</caption>
  <thead><tr><th scope="col" class="num">#</th><th scope="col">Time (UTC)</th><th scope="col">Event</th><th scope="col">What</th></tr></thead>
  <tbody>
  ${events.map(timelineRow)}
  </tbody>
</table>
${options.nextAfter !== undefined ? html`<nav class="pager" aria-label="Timeline pages"><a href="/tasks/${task.id}?after=${options.nextAfter}" rel="next">Later events</a></nav>` : ''}`;
}
