import { Hono } from 'hono';
import { z } from 'zod';
import type { AuditLog } from '../audit/audit-log.ts';
import type { EnvironmentBuild, EnvironmentStore } from '../environments/environment-store.ts';
import { eventSummary } from './event-summary.ts';
import { html, type SafeHtml } from './html.ts';
import { layout, messagePage, type PageViewer } from './layout.ts';
import { scopeCovers } from './repo-access.ts';
import { type Viewer, type ViewerDeps, viewerScope } from './viewer.ts';

/** What the environment pages read. */
export interface EnvironmentPageDeps extends ViewerDeps {
  audit: AuditLog;
  environments: {
    store: EnvironmentStore;
    /** A build's log as far as it was written. */
    log(buildId: string): Promise<string>;
  };
}

const BuildId = z.string().regex(/^build-[a-z0-9]{1,32}$/);
/** Characters of a build log a page shows (its end: where a failure is). */
const LOG_PAGE_CHARS = 256 * 1024;

type Env = { Variables: { viewer: Extract<Viewer, { kind: 'person' }> } };

/**
 * The environment builds of the repositories a person can read: the list, and each build's page
 * with its log and its audit record. Mounted under /environments behind sign-in (see pageRoutes).
 */
export function environmentPages(deps: EnvironmentPageDeps): Hono<Env> {
  const app = new Hono<Env>();
  const visible = async (viewer: Viewer, build: EnvironmentBuild) =>
    scopeCovers(await viewerScope(viewer, deps), build);

  app.get('/', async (c) => {
    const viewer = c.get('viewer');
    const scope = await viewerScope(viewer, deps);
    const builds = (await deps.environments.store.listBuilds({ limit: 200 })).filter((b) =>
      scopeCovers(scope, b),
    );
    const current = (await deps.environments.store.listEnvironments({ limit: 200 })).filter(
      (e) => e.state === 'ready',
    );
    const body = html`<h1>Environments</h1>
<p class="muted">Each repository's toolchain and dependencies, built once and restored by its tasks. See docs/environments.md.</p>
<table class="tasks">
<thead><tr><th>Build</th><th>State</th><th>Trigger</th><th>Environment</th><th>Finished</th></tr></thead>
<tbody>${builds.map(
      (b) => html`<tr>
  <td data-label="Build"><a href="/environments/builds/${b.id}">${b.repoFullName}</a> <span class="sub"><code>${b.id}</code></span></td>
  <td data-label="State"><span class="state state-${b.state}">${b.state}</span>${b.host ? html` <span class="sub">${b.state === 'queued' ? 'for' : 'on'} ${b.host}</span>` : ''}</td>
  <td data-label="Trigger">${b.trigger.kind} by ${b.trigger.by}</td>
  <td data-label="Environment">${b.environmentId ? html`<code>${b.environmentId}</code>${current.some((e) => e.id === b.environmentId) ? ' (on disk)' : ' (collected)'}` : '–'}</td>
  <td data-label="Finished">${b.finishedAt ?? '–'}</td>
</tr>`,
    )}</tbody>
</table>`;
    return c.html(layout({ title: 'Environments', viewer: pageViewer(viewer), body }).value);
  });

  app.get('/builds/:id', async (c) => {
    const viewer = c.get('viewer');
    const id = BuildId.safeParse(c.req.param('id'));
    const build = id.success ? await deps.environments.store.findBuild(id.data) : undefined;
    if (!build || !(await visible(viewer, build))) {
      return c.html(
        messagePage(
          'Build not found',
          'There is no such build, or it belongs to a repository GitHub does not say you can read.',
          pageViewer(viewer),
          { href: '/environments', text: 'All environments' },
        ).value,
        404,
      );
    }
    const log = await deps.environments.log(build.id);
    const [verdict, events, typeCounts] = await Promise.all([
      deps.audit.verify(build.id),
      deps.audit.events(build.id, { limit: 2000 }, { excludeTypes: ['vm.exec'] }),
      deps.audit.typeCounts(build.id),
    ]);
    const body = html`<h1>Environment build <code>${build.id}</code></h1>
<p>${build.repoFullName} · <span class="state state-${build.state}">${build.state}</span>${build.reason ? html` · ${build.reason}` : ''}</p>
<dl>
  <dt>Trigger</dt><dd>${build.trigger.kind} by ${build.trigger.by}${build.trigger.detail ? html` (${build.trigger.detail})` : ''}${build.trigger.taskId ? html` · task <a href="/tasks/${build.trigger.taskId}">${build.trigger.taskId}</a>` : ''}</dd>
  ${build.host ? html`<dt>Worker</dt><dd>${build.host}</dd>` : ''}
  <dt>Commit</dt><dd><code>${build.commitSha ?? '–'}</code></dd>
  <dt>Key</dt><dd><code>${build.envKey ?? '–'}</code></dd>
  <dt>Environment</dt><dd><code>${build.environmentId ?? '–'}</code></dd>
  <dt>Record</dt><dd>${verdict.ok ? `${verdict.events} events, chain verified` : `chain does not verify: ${verdict.problems.map((p) => p.problem).join('; ')}`}</dd>
</dl>
<h2>Log</h2>
${logBlock(log)}
<h2>Record</h2>
<p class="muted">Every event of the build's audit chain but the exec audit (${typeCounts.get('vm.exec') ?? 0} processes).</p>
<ol class="timeline">${events.map((e) => html`<li><code>${e.seq}</code> ${e.ts} <strong>${e.type}</strong> ${eventSummary(e)}</li>`)}</ol>`;
    return c.html(layout({ title: `Build ${build.id}`, viewer: pageViewer(viewer), body }).value);
  });

  return app;
}

function logBlock(log: string): SafeHtml {
  if (log === '') return html`<p class="muted">No output yet.</p>`;
  const cut = log.length > LOG_PAGE_CHARS;
  return html`${cut ? html`<p class="muted">The first ${log.length - LOG_PAGE_CHARS} characters are left out.</p>` : ''}<pre class="log">${cut ? log.slice(-LOG_PAGE_CHARS) : log}</pre>`;
}

function pageViewer(viewer: Extract<Viewer, { kind: 'person' }>): PageViewer {
  return { login: viewer.session.login };
}
