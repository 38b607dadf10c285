import type { AuditEvent } from '../audit/audit-log.ts';
import type { ChainVerdict } from '../audit/chain-verdicts.ts';
import type { Task } from '../tasks/task.ts';
import { isTerminal, TaskState } from '../tasks/task.ts';
import { diffView } from './diff-view.ts';
import { html, SafeHtml } from './html.ts';
import { stepsView } from './steps-view.ts';
import { requester, taskDuration, taskFor, taskHeader, taskOutcome, taskTitle } from './task-header.ts';
import type { TaskListFilter, TaskPage } from './task-query.ts';
import type { Step } from './task-steps.ts';
import { instant } from './time-format.ts';
import { verdictBadge } from './verdict-badge.ts';

/** Tasks per page of the list unless the query asks otherwise. */
export const DEFAULT_PER_PAGE = 50;

/** The task list: filters, a table, and pagination links that keep the filters. */
export function taskListView(
  page: TaskPage,
  filter: TaskListFilter,
  repositories: readonly string[],
  verdictOf: (task: Task) => ChainVerdict,
  now: string,
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
<table class="tasks">
  <caption>${page.total} task(s)${page.total ? `, page ${page.page} of ${pages}` : ''}</caption>
  <thead><tr><th scope="col">Task</th><th scope="col">State</th><th scope="col">Outcome</th><th scope="col">PR</th><th scope="col">Took</th><th scope="col">Requested by</th><th scope="col">Created</th></tr></thead>
  <tbody>
  ${page.tasks.map(
    (t) => html`<tr>
    <td data-label="Task" class="task-cell"><a href="/tasks/${t.id}" class="title">${taskTitle(t)}</a>
      <span class="sub">${t.repoFullName} · ${t.kind === 'local' ? html`<span class="badge">local</span>` : taskFor(t)} · <code>${t.id}</code></span></td>
    <td data-label="State"><span class="state state-${t.state}">${t.state}</span> ${verdictBadge(t.id, verdictOf(t))}</td>
    <td data-label="Outcome">${listOutcome(t)}</td>
    <td data-label="PR">${prCell(t)}</td>
    <td data-label="Took">${taskDuration(t, now)}${isTerminal(t.state) ? '' : ' so far'}</td>
    <td data-label="Requested by">${requester(t, { short: true })}</td>
    <td data-label="Created">${instant(t.createdAt)}</td>
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

function prCell(task: Task): SafeHtml | string {
  const pr = task.result?.prNumber ?? (task.kind === 'issue' ? null : task.prNumber);
  if (pr == null) return html`<span class="muted">–</span>`;
  return task.result?.prUrl ? html`<a href="${task.result.prUrl}">#${pr}</a>` : `#${pr}`;
}

function listOutcome(task: Task): SafeHtml | string {
  if (!isTerminal(task.state)) return html`<span class="muted">–</span>`;
  if (task.state !== 'succeeded') return task.reason ? clipText(task.reason, 80) : task.state;
  return task.result?.outcome === 'no_changes' ? 'no changes' : 'changes pushed';
}

function clipText(text: string, max: number): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/** Everything the task page shows (and its live updates re-render). */
export interface TaskPageParts {
  task: Task;
  verdict: ChainVerdict;
  phase: { state: string; since: string } | undefined;
  steps: readonly Step[];
  stepsCapped: boolean;
  diff: AuditEvent | undefined;
  webUrl: string;
  now: string;
}

/** The parts of the task page that live updates replace, by element id. */
export function taskPanels(p: TaskPageParts, view: 'steps' | 'timeline'): Record<string, string> {
  const panels: Record<string, string> = {
    'task-header': taskHeader({ ...p, view }).value,
  };
  if (view === 'steps') {
    panels['task-outcome'] = taskOutcome(p.task).value;
    panels['task-steps'] = stepsView(p.task.id, p.steps, p.now, p.stepsCapped).value;
    panels['task-diff'] = diffView(p.task, p.diff).value;
  }
  return panels;
}

/** What the live status line says for a task in this state. */
export function liveStatus(task: Task): string {
  if (task.state === 'queued') return 'Queued: this page updates when the task starts.';
  if (!isTerminal(task.state)) return 'Running: this page follows the task as it is recorded.';
  return 'Task finished.';
}

/** The live-updates element: the status line and where the stream is. */
export function liveBlock(task: Task, afterSeq: number, view: 'steps' | 'timeline'): SafeHtml {
  if (isTerminal(task.state)) return html``;
  return html`<p class="live" id="live-status" role="status" data-stream="/tasks/${task.id}/live?after=${afterSeq}&amp;view=${view}">${liveStatus(task)}</p>`;
}

/** The task page's main view: header, outcome, the steps and the diff. */
export function taskView(p: TaskPageParts, afterSeq: number): SafeHtml {
  const panels = taskPanels(p, 'steps');
  const raw = (id: string) => html`<div id="${id}">${new SafeHtml(panels[id]!)}</div>`;
  return html`${raw('task-header')}
${liveBlock(p.task, afterSeq, 'steps')}
<section aria-labelledby="h-outcome"><h2 id="h-outcome">Outcome</h2>${raw('task-outcome')}</section>
<section aria-labelledby="h-steps"><h2 id="h-steps">Steps</h2>${raw('task-steps')}</section>
<section id="diff" aria-labelledby="h-diff"><h2 id="h-diff">Diff</h2>${raw('task-diff')}</section>`;
}
