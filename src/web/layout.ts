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
  <nav aria-label="Account">
    ${
      options.viewer
        ? html`<span>Signed in as <strong>${options.viewer.login}</strong></span>
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
.top { display: flex; justify-content: space-between; align-items: center; padding: 8px 24px; border-bottom: 1px solid var(--line); }
.top nav { display: flex; gap: 12px; align-items: center; } .top form { margin: 0; }
.brand { font-weight: 700; text-decoration: none; font-size: 18px; }
main { padding: 16px 24px 48px; max-width: 1200px; }
h1 { font-size: 24px; margin: 8px 0 16px; } h2 { font-size: 18px; margin: 24px 0 8px; }
table { border-collapse: collapse; width: 100%; } caption { text-align: left; color: var(--muted); padding: 4px 0; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
form.filters { display: flex; flex-wrap: wrap; gap: 12px; align-items: end; margin-bottom: 12px; }
form.filters label { display: flex; flex-direction: column; font-size: 13px; color: var(--muted); }
input, select, button { font: inherit; padding: 4px 8px; border: 1px solid var(--line); border-radius: 6px; background: var(--bg); color: var(--fg); }
button { cursor: pointer; }
.state { display: inline-block; padding: 0 8px; border-radius: 10px; border: 1px solid currentColor; font-size: 13px; }
.state-succeeded { color: var(--ok); } .state-failed, .state-timed_out { color: var(--bad); } .state-cancelled { color: var(--muted); }
.state-running, .state-starting, .state-pushing, .state-queued { color: var(--warn); }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0; } dl.facts dt { color: var(--muted); } dl.facts dd { margin: 0; }
code, pre { font: 13px/1.45 ui-monospace, SFMono-Regular, Menlo, monospace; } .hash { word-break: break-all; }
pre { background: var(--code); padding: 8px 12px; overflow-x: auto; border-radius: 6px; }
pre.diff .add { color: var(--ok); } pre.diff .del { color: var(--bad); } pre.diff .hunk { color: var(--accent); }
tr.refused td { background: color-mix(in srgb, var(--bad) 10%, transparent); }
td.type { white-space: nowrap; } td.when { white-space: nowrap; color: var(--muted); }
details > summary { cursor: pointer; color: var(--muted); } details pre { max-height: 24em; }
.pager { display: flex; gap: 16px; align-items: center; margin-top: 12px; }
.actions { display: flex; gap: 16px; flex-wrap: wrap; margin: 8px 0 16px; }
.notice { border-left: 4px solid var(--warn); padding: 4px 12px; }
.live { color: var(--warn); font-size: 13px; }
`;

/** Live updates: appends rows streamed by /tasks/:id/live to the timeline, updates the state. */
export const LIVE_SCRIPT = `
(() => {
  const timeline = document.querySelector('[data-live]');
  if (!timeline || !window.EventSource) return;
  const body = timeline.querySelector('tbody');
  const status = document.getElementById('live-status');
  const source = new EventSource(timeline.getAttribute('data-live'));
  source.addEventListener('audit', (message) => {
    const event = JSON.parse(message.data);
    body.insertAdjacentHTML('beforeend', event.row);
    if (event.state) {
      const badge = document.getElementById('task-state');
      badge.textContent = event.state;
      badge.className = 'state state-' + event.state;
    }
  });
  source.addEventListener('end', () => { source.close(); if (status) status.textContent = 'Task finished.'; });
  source.addEventListener('error', () => { if (status && source.readyState !== 2) status.textContent = 'Connection lost; reconnecting…'; });
  source.addEventListener('open', () => { if (status) status.textContent = 'Running: new events appear as they are recorded.'; });
})();
`;
