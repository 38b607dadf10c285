import { diffAnchor } from './diff-view.ts';
import { html, type SafeHtml } from './html.ts';
import { untrustedMarkdown } from './safe-markdown.ts';
import type { Step, StepItem } from './task-steps.ts';
import { between, duration, instant } from './time-format.ts';

function itemView(taskId: string, item: StepItem): SafeHtml {
  const gap = item.silenceMs
    ? html`<li class="gap" role="separator">${duration(item.silenceMs)} with no events</li>`
    : '';
  const exit =
    item.exitCode === undefined
      ? ''
      : html` <span class="exit ${item.exitCode === 0 ? 'exit-ok' : 'exit-bad'}">exit ${item.exitCode ?? '?'}</span>`;
  const edits = item.edits?.length
    ? html` <span class="edits">${item.edits.map((p, i) => html`${i ? ', ' : ''}<a href="#${diffAnchor(p)}">${p}</a>`)}</span>`
    : item.label === 'diff'
      ? html` <a href="#diff">see the diff</a>`
      : '';
  const output =
    item.output !== undefined
      ? html`<details><summary>${item.label === 'prompt' ? 'prompt' : 'output'} (${item.output.split('\n').length} lines)</summary><pre>${item.output}</pre></details>`
      : '';
  return html`${gap}<li class="item tone-${item.tone}" id="s${item.seq}">
  <span class="chip">${item.label}</span>
  <div class="item-body">${item.title ? (item.code ? html`<code class="cmd">${item.title}</code>` : html`<span>${item.title}</span>`) : ''}${exit}${edits}
  ${item.markdown !== undefined ? html`<div class="md">${untrustedMarkdown(item.markdown)}</div>` : ''}${output}</div>
  <a class="seq" href="/tasks/${taskId}/timeline?after=${item.seq - 1}#e${item.seq}" title="This event in the audit timeline">#${item.seq}</a>
</li>`;
}

/** The steps view: each step with its duration, its items, and the agent's model usage. */
export function stepsView(taskId: string, steps: readonly Step[], now: string, capped: boolean): SafeHtml {
  if (steps.length === 0) return html`<p class="muted">Nothing recorded yet.</p>`;
  return html`${capped ? html`<p class="notice">This record is long: the steps show its first events only. The <a href="/tasks/${taskId}/timeline">audit timeline</a> has all of them.</p>` : ''}
<ol class="steps">
${steps.map((step, i) => {
  const end = step.endTs ?? (i === steps.length - 1 ? now : undefined);
  const took = end ? duration(between(step.startTs, end)) : '';
  const running = !step.endTs && i === steps.length - 1;
  return html`<li class="step step-${step.actor}" id="step-${step.id}">
  <div class="step-head"><h3>${step.title}</h3><span class="who">${step.actor === 'agent' ? 'agent' : 'airlock'}</span>
  <span class="took">${instant(step.startTs, 'time')}${took ? html` · ${running ? `${took} so far` : took}` : ''}</span></div>
  ${step.usage ? html`<p class="usage">Model usage: ${step.usage.inputTokens.toLocaleString('en-US')} tokens in, ${step.usage.outputTokens.toLocaleString('en-US')} out${step.usage.costUsd !== undefined ? `, $${step.usage.costUsd.toFixed(4)}` : ''}</p>` : ''}
  <ul class="items">${step.items.map((item) => itemView(taskId, item))}</ul>
</li>`;
})}
</ol>`;
}
