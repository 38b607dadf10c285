import type { AuditEvent } from '../audit/audit-log.ts';
import type { ChainVerdict } from '../audit/chain-verdicts.ts';
import { isExecAuditGapType } from '../audit/chain-verdicts.ts';
import { eventSummary, isRefusal } from './event-summary.ts';
import { html, type SafeHtml } from './html.ts';
import { instant } from './time-format.ts';

/** The argv prefix of the guest agent's wrapper around every command airlock runs in the VM. */
const WRAPPER = ['/usr/bin/choom', '-n', '0', '--'];

function argvOf(event: AuditEvent): string[] | undefined {
  return event.type === 'vm.exec' && Array.isArray(event.data.argv) ? event.data.argv.map(String) : undefined;
}

/** Whether an exec record is the guest agent starting a command airlock asked for. */
export function isAirlockWrapper(event: AuditEvent): boolean {
  const argv = argvOf(event);
  return !!argv && argv.length > WRAPPER.length && WRAPPER.every((part, i) => argv[i] === part);
}

/** Whether `next` is the command a wrapper record started (the same process, exec'd). */
export function wrapsInto(wrapper: AuditEvent, next: AuditEvent): boolean {
  const inner = argvOf(wrapper)?.slice(WRAPPER.length);
  const argv = argvOf(next);
  if (!inner || !argv) return false;
  if (wrapper.data.pid != null && next.data.pid != null) return wrapper.data.pid === next.data.pid;
  return argv.length === inner.length && argv.every((part, i) => part === inner[i]);
}

/** One timeline row (also streamed to the page by live updates). */
export function timelineRow(
  event: AuditEvent,
  options: { folded?: AuditEvent; broken?: string } = {},
): SafeHtml {
  const airlock = isAirlockWrapper(event);
  const classes = [
    isRefusal(event) ? 'refused' : '',
    isExecAuditGapType(event.type) ? 'warning' : '',
    options.broken ? 'broken' : '',
  ].filter(Boolean);
  const summary = airlock
    ? html`<span class="chip chip-airlock">airlock</span> ran <code>${(argvOf(event) ?? []).slice(WRAPPER.length).join(' ')}</code>${event.data.uid != null ? ` (uid ${String(event.data.uid)})` : ''}`
    : html`${event.type === 'vm.exec' ? html`<span class="chip">in VM</span> ` : ''}${eventSummary(event)}`;
  return html`<tr id="e${event.seq}"${classes.length ? html` class="${classes.join(' ')}"` : ''}>
  <td class="num">${event.seq}${options.folded ? html`<span id="e${options.folded.seq}" class="also">+${options.folded.seq}</span>` : ''}</td>
  <td class="when">${instant(event.ts, 'time')}</td>
  <td class="type"><code>${event.type}</code></td>
  <td class="what">${options.broken ? html`<strong class="broken-note">The chain breaks here: ${options.broken}.</strong> ` : ''}${summary}<details><summary>details</summary><pre>${JSON.stringify(
    {
      data: event.data,
      ...(event.content ? { content: event.content } : {}),
      hash: event.hash,
      prevHash: event.prevHash,
      ...(options.folded ? { folded: { seq: options.folded.seq, data: options.folded.data } } : {}),
    },
    null,
    2,
  )}</pre></details></td>
</tr>`;
}

/** Timeline rows with each wrapper record folded into the command it started. */
export function timelineRows(events: readonly AuditEvent[], verdict: ChainVerdict | undefined): SafeHtml[] {
  const rows: SafeHtml[] = [];
  for (let i = 0; i < events.length; i++) {
    const event = events[i]!;
    const next = events[i + 1];
    const folded = isAirlockWrapper(event) && next && wrapsInto(event, next) ? next : undefined;
    const broken = verdict?.problem?.seq === event.seq ? verdict.problem.problem : undefined;
    rows.push(timelineRow(event, { ...(folded ? { folded } : {}), ...(broken ? { broken } : {}) }));
    if (folded) i++;
  }
  return rows;
}

/** What the timeline shows: a page of events and how to move and filter. */
export interface TimelinePage {
  taskId: string;
  events: readonly AuditEvent[];
  verdict: ChainVerdict;
  typeCounts: ReadonlyMap<string, number>;
  filter: { types: readonly string[]; refusals: boolean };
  earlier: number | undefined;
  later: number | undefined;
  firstRefusal: number | undefined;
  refusals: number;
  outcome: number | undefined;
  live: boolean;
  lastSeq: number;
}

/** The raw audit timeline: type filters, jumps to refusals and outcome, paging both ways. */
export function timelineView(p: TimelinePage): SafeHtml {
  const base = `/tasks/${p.taskId}/timeline`;
  const query = (extra: Record<string, string>) => {
    const q = new URLSearchParams();
    for (const t of p.filter.types) q.append('type', t);
    if (p.filter.refusals) q.set('only', 'refusals');
    for (const [k, v] of Object.entries(extra)) q.set(k, v);
    const s = q.toString();
    return s ? `${base}?${s}` : base;
  };
  const pager = html`<nav class="pager" aria-label="Timeline pages">
  ${p.earlier !== undefined ? html`<a href="${query({ before: String(p.earlier) })}" rel="prev">Earlier events</a>` : ''}
  ${p.later !== undefined ? html`<a href="${query({ after: String(p.later) })}" rel="next">Later events</a>` : ''}
</nav>`;
  const filtered = p.filter.types.length > 0 || p.filter.refusals;
  return html`<div class="jumps">
  ${p.firstRefusal !== undefined ? html`<a href="${base}?after=${p.firstRefusal - 1}#e${p.firstRefusal}">Jump to the first refusal</a> <a href="${base}?only=refusals">Only refusals (${p.refusals})</a>` : html`<span class="muted">No refusals</span>`}
  ${p.outcome !== undefined ? html`<a href="${base}?before=${p.outcome + 1}#e${p.outcome}">Jump to the outcome</a>` : ''}
  ${filtered ? html`<a href="${base}">All events</a>` : ''}
</div>
<details class="type-filter"${filtered ? html` open` : ''}><summary>Filter by type</summary>
<form method="get" action="${base}" class="filters" aria-label="Filter events">
  ${[...p.typeCounts].map(
    ([type, n]) =>
      html`<label class="check"><input type="checkbox" name="type" value="${type}"${p.filter.types.includes(type) ? html` checked` : ''}> <code>${type}</code> (${n})</label>`,
  )}
  <label class="check"><input type="checkbox" name="only" value="refusals"${p.filter.refusals ? html` checked` : ''}> refusals only</label>
  <button type="submit">Show</button>
</form></details>
${pager}
<div class="scroll-x"><table class="timeline"${p.live && !filtered && p.later === undefined ? html` data-live="/tasks/${p.taskId}/live?after=${p.lastSeq}&amp;view=timeline"` : ''}>
  <caption>Audit events in chain order${filtered ? ' (filtered)' : ''}; times in UTC unless your browser shows them in your zone</caption>
  <thead><tr><th scope="col" class="num">#</th><th scope="col">Time</th><th scope="col">Event</th><th scope="col">What</th></tr></thead>
  <tbody>
  ${timelineRows(p.events, p.verdict)}
  </tbody>
</table></div>
${p.events.length === 0 ? html`<p>No events match.</p>` : ''}
${pager}`;
}
