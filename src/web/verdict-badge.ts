import type { ChainVerdict } from '../audit/chain-verdicts.ts';
import { html, type SafeHtml } from './html.ts';

/** Where "what does verified mean" is answered. */
export const VERIFIED_HELP = '/verified';

/** The chain's verdict as a badge: verified, broken (linked to where), or no events; plus exec-audit gaps. */
export function verdictBadge(
  taskId: string,
  verdict: ChainVerdict,
  options: { long?: boolean } = {},
): SafeHtml {
  const main =
    verdict.state === 'verified'
      ? html`<a class="badge badge-ok" href="${VERIFIED_HELP}" title="Every event recomputes to its hash and links to the one before: nothing was changed, removed or reordered after it was written.">✓ verified</a>`
      : verdict.state === 'broken'
        ? html`<a class="badge badge-bad" href="/tasks/${taskId}/timeline?after=${Math.max(0, (verdict.problem?.seq ?? 1) - 1)}#e${verdict.problem?.seq ?? 1}" title="${verdict.problem?.problem ?? ''}">✗ broken at event ${verdict.problem?.seq ?? '?'}</a>`
        : html`<span class="badge">no events</span>`;
  const gaps = verdict.execAuditGaps;
  const gap = gaps.length
    ? html` <a class="badge badge-warn" href="/tasks/${taskId}/timeline?after=${gaps[0]!.seq - 1}#e${gaps[0]!.seq}" title="The record of processes run in the VM may be incomplete (${gaps[0]!.type}).">⚠ exec audit incomplete</a>`
    : '';
  const explain =
    options.long && verdict.state === 'broken'
      ? html`<p class="chain-problem" role="alert"><strong>This record does not verify:</strong> ${verdict.problem?.problem ?? 'unknown problem'}. Events from there on cannot be trusted. <a href="${VERIFIED_HELP}">What this means</a></p>`
      : '';
  return html`<span class="verdict" data-verdict="${verdict.state}">${main}${gap}</span>${explain}`;
}

/** The page that says what the badge means. */
export function verifiedHelpBody(): SafeHtml {
  return html`<h1>What “verified” means</h1>
<p>Every task has an append-only audit record: each event (a process run in the VM, a host the
agent reached, a push it tried, what the model was asked and said) is stored with a SHA-256 hash
over its own fields and the hash of the event before it. The events form a chain.</p>
<dl class="facts">
  <dt><span class="badge badge-ok">✓ verified</span></dt>
  <dd>airlock recomputed every hash of the task's chain from what is stored and each one matched,
  and every event links to the one before: no event was changed, removed, inserted or reordered
  after it was written. Prompt and response texts match the digests their events carry (a purged
  text must be covered by an <code>audit.purged</code> event of the same chain).</dd>
  <dt><span class="badge badge-bad">✗ broken</span></dt>
  <dd>The chain does not recompute from a given event on: something was altered after it was
  written. The badge links to the first such event; nothing from there on can be trusted.</dd>
  <dt><span class="badge badge-warn">⚠ exec audit incomplete</span></dt>
  <dd>The chain itself may be intact, but the guest could not confirm that every process it ran
  was reported (for instance the VM stopped before its audit was synced): the list of processes
  may miss some.</dd>
</dl>
<p>Verification says the record was not changed <em>after</em> it was written. It is computed
when the chain grows and at least every ten minutes while a page is viewed; anyone with the
database can check it again with <code>airlock audit verify TASK</code>, or check an exported
record (JSON) against the chain head shown on the task page and on the pull request's check run.</p>`;
}
