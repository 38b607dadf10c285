import { html, SafeHtml } from '../web/html.ts';
import type { AppManifest } from './app-manifest.ts';

// Why airlock asks for each permission and event: shown to the person creating the app.
const PERMISSION_REASONS: Record<string, string> = {
  contents: "push the agent's branch, through the credential proxy, one repository per task",
  issues: 'react to requests, keep a tracking comment, explain refusals',
  pull_requests: "open and update the agent's pull request",
  checks: 'report each task as the airlock check on its branch',
  actions: 'read CI logs and annotations for follow-up tasks',
  metadata: 'read repository names and settings (every GitHub App has it)',
};
const EVENT_REASONS: Record<string, string> = {
  issues: 'the airlock label on an issue starts a task',
  issue_comment: '/airlock commands in comments',
  push: 'rebuilding an environment when its key files change on the default branch',
  pull_request: 'follow-ups on its own pull requests',
  pull_request_review: 'review feedback becomes a follow-up task',
  pull_request_review_comment: 'review feedback becomes a follow-up task',
  check_suite: "CI results on the agent's branch",
  check_run: "CI results on the agent's branch",
  workflow_run: "CI results on the agent's branch",
  installation: 'which accounts installed it',
  installation_repositories: 'which repositories it serves',
};

const STYLE = `
:root { color-scheme: light dark; --fg: #1f2328; --bg: #fff; --muted: #59636e; --line: #d1d9e0; --accent: #0969da; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --bg: #0d1117; --muted: #9198a1; --line: #3d444d; --accent: #4493f8; } }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
main { max-width: 720px; margin: 0 auto; padding: 24px 16px 48px; }
h1 { font-size: 26px; margin: 8px 0 4px; } h2 { font-size: 18px; margin: 24px 0 8px; }
.lead { color: var(--muted); margin-top: 0; }
table { border-collapse: collapse; width: 100%; } caption { text-align: left; padding: 4px 0; } th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
td:first-child { white-space: nowrap; font-family: ui-monospace, monospace; font-size: 13px; }
button { font: inherit; padding: 8px 16px; border-radius: 6px; border: 1px solid var(--accent); background: var(--accent); color: #fff; cursor: pointer; }
input { font: inherit; padding: 6px 8px; border: 1px solid var(--line); border-radius: 6px; background: var(--bg); color: var(--fg); }
form.inline { display: flex; gap: 8px; flex-wrap: wrap; align-items: center; margin: 12px 0; }
.muted { color: var(--muted); } code { font-size: 13px; }
`;

/** A registration page: the same frame for every step. */
export function registrationFrame(title: string, body: SafeHtml): string {
  return html`<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>${title} · airlock</title>
<style>${new SafeHtml(STYLE)}</style></head>
<body><main>${body}</main></body></html>`.value;
}

/**
 * The page that creates the GitHub App: what airlock is, what it will ask for and why, and the form
 * that posts the manifest to GitHub (for the signed-in account, or for an organisation).
 */
export function registrationPage(options: {
  manifest: AppManifest;
  /** Where the form posts: GitHub's "new app from manifest" page for the account or organisation. */
  createUrl: string;
  organization: string | undefined;
}): string {
  const { manifest } = options;
  const permissions = Object.entries(manifest.default_permissions).map(
    ([name, access]) => html`<tr><td>${name}: ${access}</td><td>${PERMISSION_REASONS[name] ?? ''}</td></tr>`,
  );
  const events = manifest.default_events.map(
    (name) => html`<tr><td>${name}</td><td>${EVENT_REASONS[name] ?? ''}</td></tr>`,
  );
  const owner = options.organization ? `the ${options.organization} organization` : 'your GitHub account';
  return registrationFrame(
    'Register airlock',
    html`<h1>Register airlock as a GitHub App</h1>
<p class="lead">airlock runs coding agents on your issues, each in a throw-away microVM that never
holds a credential: a proxy outside the VM holds the GitHub and model keys, lets the agent push only
its own branch, and records every command and connection in a hash-chained audit log.</p>
<h2>What happens next</h2>
<ol>
<li>GitHub shows the new app, named <strong>${manifest.name}</strong>, owned by ${owner}; confirm it there.</li>
<li>GitHub sends you back here; airlock writes the app's credentials to <code>.env</code>.</li>
<li>Restart airlock, install the app on the repositories it should serve, and sign in at
<code>${manifest.callback_urls[0]!.replace(/\/auth\/github\/callback$/, '/tasks')}</code>.</li>
</ol>
<form method="post" action="${options.createUrl}">
<input type="hidden" name="manifest" value="${JSON.stringify(manifest)}">
<button type="submit">Create the GitHub App on ${owner}</button>
</form>
<form class="inline" method="get" action="/">
<label for="org">For an organization instead:</label>
<input id="org" name="org" placeholder="organization name" value="${options.organization ?? ''}">
<button type="submit">Use it</button>
</form>
<h2>What it will ask for</h2>
<table><caption class="muted">Repository permissions (nothing for the organization or for people)</caption>
${permissions}</table>
<h2>Events it listens to</h2>
<table>${events}</table>
<h2>Where GitHub will reach it</h2>
<table>
<tr><td>webhooks</td><td>${manifest.hook_attributes.url}</td></tr>
<tr><td>sign-in callback</td><td>${manifest.callback_urls.join(', ')}</td></tr>
</table>
<p class="muted">These come from AIRLOCK_PUBLIC_URL; set it (and restart) if people and GitHub reach
airlock at another address. The permissions and events come from <code>app.yml</code>.</p>`,
  );
}
