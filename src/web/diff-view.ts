import type { AuditEvent } from '../audit/audit-log.ts';
import type { Task } from '../tasks/task.ts';
import { isTerminal } from '../tasks/task.ts';
import { html, type SafeHtml } from './html.ts';

/** The anchor of one file's part of the diff (edits in the steps link to it). */
export function diffAnchor(path: string): string {
  return `diff-${path.replace(/[^A-Za-z0-9_.-]/g, '_')}`;
}

function patchLines(patch: string): SafeHtml[] {
  return patch.split('\n').map((line) => {
    const cls = line.startsWith('@@')
      ? 'hunk'
      : line.startsWith('+') && !line.startsWith('+++')
        ? 'add'
        : line.startsWith('-') && !line.startsWith('---')
          ? 'del'
          : '';
    return cls ? html`<span class="${cls}">${line}</span>\n` : html`${line}\n`;
  });
}

/** The diff a task committed, split per file, or what there is to say when there is none. */
export function diffView(task: Task, diff: AuditEvent | undefined): SafeHtml {
  if (!diff) {
    const why = !isTerminal(task.state)
      ? 'No diff yet: it is recorded once the agent has finished and its changes are committed.'
      : task.result?.outcome === 'no_changes'
        ? 'No changes: the agent finished without changing any file.'
        : 'No diff: the task ended before any change was committed.';
    return html`<p class="muted">${why}</p>`;
  }
  return html`<pre aria-label="Diff stat" class="stat">${String(diff.data.stat ?? '')}</pre>
<p class="muted">Base <code>${String(diff.data.base ?? '').slice(0, 12)}</code> → head <code>${String(diff.data.head ?? '').slice(0, 12)}</code></p>
${patchSections(String(diff.data.patch ?? ''))}`;
}

/** A patch, one collapsible section per file, every line escaped (it is the agent's text). */
export function patchSections(patch: string): SafeHtml[] {
  const files = patch.split(/^(?=diff --git )/m).filter((part) => part.trim());
  return files.map((part) => {
    const name = /^diff --git a\/(.*?) b\/(.*)$/m.exec(part)?.[2] ?? /^\+\+\+ b\/(.*)$/m.exec(part)?.[1];
    return html`<details open id="${name ? diffAnchor(name) : ''}" class="diff-file"><summary><code>${name ?? 'patch'}</code></summary><pre class="diff" aria-label="Patch">${patchLines(part)}</pre></details>`;
  });
}
