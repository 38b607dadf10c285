import { html, type SafeHtml } from './html.ts';

/** Who the page is shown to (for the header). */
export interface PageViewer {
  login: string;
}

/** The page shell: header with the signed-in person and sign-out, main content, stylesheet. */
export function layout(options: {
  title: string;
  viewer?: PageViewer | undefined;
  body: SafeHtml;
  script?: boolean;
}): SafeHtml {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${options.title} · airlock</title>
<link rel="stylesheet" href="/static/airlock.css">
${options.script ? html`<script src="/static/live.js" defer></script>` : ''}
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header class="top">
  <a class="brand" href="/tasks">airlock</a>
  ${options.viewer ? html`<nav aria-label="Sections"><a href="/tasks">Tasks</a> <a href="/environments">Environments</a></nav>` : ''}
  <nav aria-label="Account">
    ${
      options.viewer
        ? html`<a href="/approvals">Approvals</a> <span>Signed in as <strong>${options.viewer.login}</strong></span>
    <form method="post" action="/logout"><button type="submit">Sign out</button></form>`
        : ''
    }
  </nav>
</header>
<main id="main">
${options.body}
</main>
</body>
</html>
`;
}

/** A plain page with a heading and a message (errors, not found, sign-in problems). */
export function messagePage(
  title: string,
  message: string,
  viewer?: PageViewer,
  next: { href: string; text: string } = { href: '/tasks', text: 'All tasks' },
): SafeHtml {
  return layout({
    title,
    viewer,
    body: html`<h1>${title}</h1><p>${message}</p><p><a href="${next.href}">${next.text}</a></p>`,
  });
}

/** The stylesheet, served at /static/airlock.css. */
export const STYLESHEET = `
:root { color-scheme: light dark; --fg: #1f2328; --bg: #ffffff; --muted: #59636e; --line: #d1d9e0; --accent: #0969da;
  --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; --code: #f6f8fa; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --bg: #0d1117; --muted: #9198a1; --line: #3d444d;
  --accent: #4493f8; --ok: #3fb950; --bad: #f85149; --warn: #d29922; --code: #151b23; } }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
a { color: var(--accent); }
:focus-visible { outline: 3px solid var(--accent); outline-offset: 2px; }
.skip { position: absolute; left: -999px; } .skip:focus { left: 8px; top: 8px; background: var(--bg); padding: 4px; }
.top { display: flex; justify-content: space-between; align-items: center; gap: 8px; flex-wrap: wrap; padding: 8px 24px; border-bottom: 1px solid var(--line); }
.top nav { display: flex; gap: 12px; align-items: center; flex-wrap: wrap; } .top form { margin: 0; }
.brand { font-weight: 700; text-decoration: none; font-size: 18px; }
main { padding: 16px 24px 48px; max-width: 1200px; }
h1 { font-size: 24px; margin: 4px 0 8px; overflow-wrap: anywhere; } h2 { font-size: 18px; margin: 24px 0 8px; } h3 { font-size: 15px; margin: 0; }
.muted { color: var(--muted); } .small { font-size: 13px; }
table { border-collapse: collapse; width: 100%; } caption { text-align: left; color: var(--muted); padding: 4px 0; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
form.filters { display: flex; flex-wrap: wrap; gap: 12px; align-items: end; margin-bottom: 12px; }
form.filters label { display: flex; flex-direction: column; font-size: 13px; color: var(--muted); min-width: 0; }
form.filters label.check { flex-direction: row; gap: 4px; align-items: center; color: var(--fg); }
input, select, button { font: inherit; padding: 4px 8px; border: 1px solid var(--line); border-radius: 6px; background: var(--bg); color: var(--fg); max-width: 100%; }
button { cursor: pointer; }
.state, .badge { display: inline-block; padding: 0 8px; border-radius: 10px; border: 1px solid currentColor; font-size: 13px; white-space: nowrap; text-decoration: none; }
.badge { color: var(--muted); } .badge-ok { color: var(--ok); } .badge-bad { color: var(--bad); font-weight: 600; } .badge-warn { color: var(--warn); }
.state-succeeded { color: var(--ok); } .state-failed, .state-timed_out { color: var(--bad); } .state-cancelled { color: var(--muted); }
.state-running, .state-starting, .state-pushing, .state-queued { color: var(--warn); }
.crumbs { margin: 0; color: var(--muted); font-size: 13px; overflow-wrap: anywhere; }
.badges { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; margin-bottom: 12px; } .phase { color: var(--muted); font-size: 13px; }
.chain-problem { flex-basis: 100%; border-left: 4px solid var(--bad); padding: 4px 12px; margin: 4px 0; }
dl.facts { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: 4px 16px; margin: 0; } dl.facts dt { color: var(--muted); } dl.facts dd { margin: 0; min-width: 0; overflow-wrap: anywhere; }
code, pre { font: 13px/1.45 ui-monospace, SFMono-Regular, Menlo, monospace; } .hash { word-break: break-all; }
pre { background: var(--code); padding: 8px 12px; overflow-x: auto; border-radius: 6px; max-width: 100%; }
pre.diff .add { color: var(--ok); } pre.diff .del { color: var(--bad); } pre.diff .hunk { color: var(--accent); }
.diff-file > summary { margin: 8px 0 4px; }
tr.refused td { background: color-mix(in srgb, var(--bad) 10%, transparent); }
tr.warning td { background: color-mix(in srgb, var(--warn) 14%, transparent); }
tr.broken td { background: color-mix(in srgb, var(--bad) 22%, transparent); } .broken-note { color: var(--bad); }
td.type { white-space: nowrap; } td.when { white-space: nowrap; color: var(--muted); } td.what { overflow-wrap: anywhere; min-width: 12em; }
.also { display: block; color: var(--muted); font-size: 12px; }
details > summary { cursor: pointer; color: var(--muted); } details pre { max-height: 24em; }
.pager, .jumps, .tabs { display: flex; gap: 16px; flex-wrap: wrap; align-items: center; margin: 12px 0; }
.tabs { border-bottom: 1px solid var(--line); gap: 0; } .tabs a { padding: 6px 14px; text-decoration: none; border-bottom: 2px solid transparent; }
.tabs a[aria-current] { border-bottom-color: var(--accent); color: var(--fg); font-weight: 600; }
.actions { display: flex; gap: 16px; flex-wrap: wrap; margin: 8px 0 8px; }
.notice { border-left: 4px solid var(--warn); padding: 4px 12px; }
.live { color: var(--warn); font-size: 13px; }
.scroll-x { overflow-x: auto; max-width: 100%; }
.md p, .md ul, .md ol { margin: 4px 0; } .md pre { white-space: pre-wrap; } .summary { border-left: 3px solid var(--line); padding-left: 12px; }
.chip { display: inline-block; font-size: 12px; padding: 0 6px; border-radius: 6px; background: var(--code); border: 1px solid var(--line); color: var(--muted); white-space: nowrap; }
.chip-airlock { color: var(--accent); border-color: var(--accent); }
ol.steps { list-style: none; padding: 0; margin: 0; }
.step { border: 1px solid var(--line); border-radius: 8px; margin: 0 0 12px; padding: 8px 12px; }
.step-agent { border-left: 4px solid var(--accent); } .step-airlock { border-left: 4px solid var(--line); }
.step-head { display: flex; flex-wrap: wrap; gap: 4px 12px; align-items: baseline; }
.step-head .who { font-size: 12px; color: var(--muted); text-transform: uppercase; letter-spacing: .04em; } .step-head .took { margin-left: auto; color: var(--muted); font-size: 13px; }
.usage { margin: 4px 0; color: var(--muted); font-size: 13px; }
ul.items { list-style: none; margin: 6px 0 0; padding: 0; }
li.item { display: grid; grid-template-columns: 8.5em minmax(0, 1fr) auto; gap: 8px; padding: 4px 0; border-top: 1px dashed var(--line); align-items: start; }
li.item .chip { justify-self: start; max-width: 100%; overflow: hidden; text-overflow: ellipsis; }
li.item .item-body { min-width: 0; overflow-wrap: anywhere; } li.item .seq { font-size: 12px; color: var(--muted); text-decoration: none; }
li.item pre { white-space: pre-wrap; word-break: break-word; }
code.cmd { background: var(--code); padding: 1px 4px; border-radius: 4px; white-space: pre-wrap; word-break: break-word; }
.tone-muted { color: var(--muted); } .tone-muted .chip { opacity: .8; }
.tone-refused { background: color-mix(in srgb, var(--bad) 10%, transparent); } .tone-refused .chip { color: var(--bad); border-color: var(--bad); }
.tone-error .chip { color: var(--bad); border-color: var(--bad); } .tone-ok .chip { color: var(--ok); border-color: var(--ok); }
.tone-warning { background: color-mix(in srgb, var(--warn) 14%, transparent); } .tone-warning .chip { color: var(--warn); border-color: var(--warn); }
.exit { font-size: 12px; padding: 0 6px; border-radius: 6px; border: 1px solid currentColor; margin-left: 6px; white-space: nowrap; }
.exit-ok { color: var(--ok); } .exit-bad { color: var(--bad); } .edits { font-size: 13px; margin-left: 6px; }
li.gap { text-align: center; color: var(--warn); font-size: 13px; padding: 4px 0; border-top: 1px dashed var(--warn); }
table.tasks .title { font-weight: 600; overflow-wrap: anywhere; } table.tasks .sub { display: block; font-size: 12px; color: var(--muted); overflow-wrap: anywhere; }
@media (max-width: 760px) {
  .top { padding: 8px 12px; } main { padding: 12px 12px 40px; }
  dl.facts { grid-template-columns: minmax(0, 1fr); } dl.facts dd { margin-bottom: 6px; }
  table.tasks thead { display: none; } table.tasks caption { display: block; } table.tasks, table.tasks tbody, table.tasks tr, table.tasks td { display: block; width: 100%; }
  table.tasks tr { border: 1px solid var(--line); border-radius: 8px; margin: 0 0 10px; padding: 6px 10px; }
  table.tasks td { border: 0; padding: 2px 0; } table.tasks td.task-cell { padding-bottom: 4px; }
  table.tasks td:not(.task-cell)::before { content: attr(data-label) ": "; color: var(--muted); font-size: 13px; }
  li.item { grid-template-columns: minmax(0, 1fr) auto; } li.item .chip { grid-column: 1 / -1; }
  li.item .item-body { grid-column: 1; }
  .step-head .took { margin-left: 0; }
}
`;

/**
 * The pages' script, served at /static/live.js: shows times in the reader's time zone, and on a
 * running task's page follows the live stream (/tasks/:id/live): timeline rows are appended, and
 * the header, outcome, steps and diff are replaced as the server re-renders them.
 */
export const LIVE_SCRIPT = `
(() => {
  const fullFormat = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit', timeZoneName: 'short' });
  const timeFormat = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', timeZoneName: 'short' });
  const localize = (root) => {
    for (const el of root.querySelectorAll('time[data-local]')) {
      const at = new Date(el.getAttribute('datetime'));
      if (Number.isNaN(at.getTime())) continue;
      if (!el.title) el.title = el.getAttribute('datetime');
      el.textContent = (el.getAttribute('data-local') === 'time' ? timeFormat : fullFormat).format(at);
    }
  };
  localize(document);
  const status = document.getElementById('live-status');
  if (!status || !window.EventSource) return;
  const timeline = document.querySelector('table[data-live] tbody');
  const source = new EventSource(status.getAttribute('data-stream'));
  let running = status.textContent;
  source.addEventListener('audit', (message) => {
    const event = JSON.parse(message.data);
    if (timeline && event.row) {
      timeline.insertAdjacentHTML('beforeend', event.row);
      localize(timeline.lastElementChild);
    }
    if (event.state) {
      const badge = document.getElementById('task-state');
      if (badge) { badge.textContent = event.state; badge.className = 'state state-' + event.state; }
      if (event.state !== 'queued' && running.startsWith('Queued')) running = 'Running: this page follows the task as it is recorded.';
      status.textContent = running;
    }
  });
  source.addEventListener('panels', (message) => {
    const panels = JSON.parse(message.data);
    for (const id of Object.keys(panels)) {
      const el = document.getElementById(id);
      if (!el) continue;
      // Keep what the reader opened open.
      const opened = new Set([...el.querySelectorAll('details[open]')].map((d) => d.closest('[id]')?.id));
      el.innerHTML = panels[id];
      for (const d of el.querySelectorAll('details')) if (opened.has(d.closest('[id]')?.id)) d.open = true;
      localize(el);
    }
  });
  source.addEventListener('end', () => { source.close(); status.textContent = 'Task finished.'; });
  source.addEventListener('error', () => { if (source.readyState !== 2) status.textContent = 'Connection lost; reconnecting…'; });
  source.addEventListener('open', () => { status.textContent = running; });
})();
`;
