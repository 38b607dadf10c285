import { revealHidden } from '../github/untrusted-markdown.ts';
import { type MonthSpend, type TaskSpend, usd } from '../spend/spend-ledger.ts';
import type { Approval, PushShown, RunShown } from '../tasks/approval-store.ts';
import type { HeldResult } from '../tasks/held-results.ts';
import type { Task } from '../tasks/task.ts';
import { patchSections } from './diff-view.ts';
import { html, type SafeHtml } from './html.ts';

/** One pending approval as the list shows it. */
export interface PendingItem {
  task: Task;
  approval: Approval;
}

/** The approvals page: what waits in the repositories the person can write to, and this month's spend. */
export function approvalListView(items: PendingItem[], spend: MonthSpend[], month: string): SafeHtml {
  const byRepo = new Map<string, PendingItem[]>();
  for (const item of items)
    byRepo.set(item.task.repoFullName, [...(byRepo.get(item.task.repoFullName) ?? []), item]);
  const sections = [...byRepo].map(
    ([repo, list]) => html`<section aria-label="${repo}"><h2>${repo}</h2>
<table><thead><tr><th>Task</th><th>Waits for</th><th>Asked by</th><th>Until</th><th></th></tr></thead><tbody>
${list.map(
  ({ task, approval }) => html`<tr id="approval-${task.id}">
<td><a href="/tasks/${task.id}"><code>${task.id}</code></a> ${task.context.issueTitle ?? ''}</td>
<td>${approval.gate === 'run' ? 'approval to run' : 'approval to push'}</td>
<td>@${task.actorLogin}</td>
<td>${approval.expiresAt.replace('T', ' ').slice(0, 16)} UTC</td>
<td><a href="/approvals/${task.id}">Review</a></td></tr>`,
)}
</tbody></table></section>`,
  );
  return html`<h1>Approvals</h1>
${sections.length ? sections : html`<p class="muted">Nothing waits for approval in the repositories you can write to.</p>`}
<h2>Model spend in ${month}</h2>
${
  spend.length
    ? html`<table aria-label="Model spend"><thead><tr><th>Repository</th><th>Input tokens</th><th>Output tokens</th><th>Cost</th></tr></thead><tbody>
${spend.map((s) => html`<tr><td>${s.repo}</td><td>${s.inputTokens.toLocaleString('en-US')}</td><td>${s.outputTokens.toLocaleString('en-US')}</td><td>${usd(s.costUsd)}</td></tr>`)}
</tbody></table>`
    : html`<p class="muted">No model spend recorded this month in the repositories you can read.</p>`
}`;
}

/**
 * One waiting task: exactly what waits (the frozen text, or the held result with its whole diff),
 * every piece of it escaped, and the decision form when the person may decide.
 */
export function approvalDetailView(options: {
  task: Task;
  approval: Approval;
  held: HeldResult | undefined;
  spend: TaskSpend | undefined;
  form: { csrf: string } | undefined;
  notice?: string | undefined;
}): SafeHtml {
  const { task, approval } = options;
  const what =
    approval.shown.gate === 'run' ? runView(approval.shown) : pushView(approval.shown, options.held);
  const separate = task.config.approval.separate_approver
    ? html`<p>This repository requires an approver other than @${task.actorLogin}, who asked for the task.</p>`
    : '';
  const form = options.form
    ? html`<form method="post" action="/approvals/${task.id}" class="decision">
<input type="hidden" name="csrf" value="${options.form.csrf}">
<input type="hidden" name="digest" value="${approval.shownDigest}">
<button type="submit" name="decision" value="approve">Approve</button>
<button type="submit" name="decision" value="reject">Reject</button>
</form>`
    : html`<p class="muted">Only people with write access to ${task.repoFullName} can decide.</p>`;
  return html`<h1>Task <code>${task.id}</code> waits for ${approval.gate === 'run' ? 'approval to run' : 'approval to push'}</h1>
${options.notice ? html`<p role="alert" class="notice">${options.notice}</p>` : ''}
<p><a href="/tasks/${task.id}">${task.repoFullName}</a> · asked for by @${task.actorLogin} · waits until ${approval.expiresAt.replace('T', ' ').slice(0, 16)} UTC</p>
<p>Why: ${approval.why}</p>
${what}
${options.spend ? html`<p>Model spend so far: ${options.spend.inputTokens.toLocaleString('en-US')} input and ${options.spend.outputTokens.toLocaleString('en-US')} output tokens, ${usd(options.spend.costUsd)}.</p>` : ''}
<p class="muted">What is shown here has the digest <code id="shown-digest">${approval.shownDigest}</code>; your decision is recorded with it.</p>
${separate}
${form}`;
}

function runView(shown: RunShown): SafeHtml {
  const untrusted = new Set(shown.untrustedAuthors.map((a) => a.toLowerCase()));
  const who = (author: string) =>
    html`@${author}${untrusted.has(author.toLowerCase()) ? html` <span class="chip">no write access</span>` : ''}`;
  const thread = shown.thread;
  return html`<p>The agent will get exactly this text, as it was when the task was asked for:</p>
${
  thread
    ? html`<h2>${revealHidden(thread.title)}</h2>
<p>Body, by ${who(thread.author)}:</p><pre class="untrusted" aria-label="Body">${revealHidden(thread.body)}</pre>
${thread.comments.map((c) => html`<p>Comment ${c.id}, by ${who(c.author)}:</p><pre class="untrusted" aria-label="Comment ${c.id}">${revealHidden(c.body)}</pre>`)}`
    : ''
}
${shown.instruction ? html`<p>Instruction:</p><pre class="untrusted" aria-label="Instruction">${revealHidden(shown.instruction)}</pre>` : ''}`;
}

function pushView(shown: PushShown, held: HeldResult | undefined): SafeHtml {
  return html`<p>The agent's result is held on airlock's host: nothing has reached GitHub, so no workflow has run it.</p>
<p>Commit <code>${shown.head}</code>${shown.base ? html` on <code>${shown.base}</code>` : ''}</p>
<pre aria-label="Diff stat" class="stat">${shown.diffStat}</pre>
<h2>Commands the VM ran (${shown.commands.length})</h2>
<pre aria-label="Commands" class="untrusted">${shown.commands.join('\n')}</pre>
<h2>Hosts reached beyond git and the model API</h2>
<p>${shown.hosts.length ? shown.hosts.map((h) => html`<code>${h}</code> `) : 'None.'}</p>
<h2 id="diff">Diff</h2>
${
  held
    ? html`${held.patchTruncated ? html`<p class="notice">The diff is longer than the record keeps; it was cut. The bundle on the host holds all of it.</p>` : ''}${patchSections(held.patch)}`
    : html`<p class="muted">The held result is gone from the host.</p>`
}`;
}
