import { type Context, Hono, type Next } from 'hono';
import { z } from 'zod';
import { taskRecordJson, taskRecordJsonl } from '../audit/audit-export.ts';
import type { AuditEvent, AuditLog } from '../audit/audit-log.ts';
import type { ChainVerdicts } from '../audit/chain-verdicts.ts';
import { isTerminal, type Task } from '../tasks/task.ts';
import { type EnvironmentPageDeps, environmentPages } from './environment-pages.ts';
import { html } from './html.ts';
import { layout, messagePage, type PageViewer } from './layout.ts';
import { liveTaskStream } from './live-stream.ts';
import { ALL_REPOS, scopeCovers } from './repo-access.ts';
import { AfterSeq, listFilter, TaskId, TaskListQuery } from './request-params.ts';
import { taskHeader, taskTitle } from './task-header.ts';
import type { TaskQuery } from './task-query.ts';
import { taskSteps } from './task-steps.ts';
import { liveBlock, type TaskPageParts, taskListView, taskPanels, taskView } from './task-views.ts';
import { timelineView } from './timeline-view.ts';
import { VERIFIED_HELP, verifiedHelpBody } from './verdict-badge.ts';
import { sessionViewer, type Viewer, type ViewerDeps, viewerScope } from './viewer.ts';

/** Events per page of a task's timeline. */
export const TIMELINE_PAGE = 500;
/** Events the steps view reads at most (the exec audit left out). */
export const STEPS_LIMIT = 1500;
/** Traffic the steps view shows only when it was refused (the timeline has all of it). */
const TRAFFIC_TYPES = ['proxy.egress', 'proxy.git', 'proxy.model'];

/** The events the steps are built from: no exec audit, and of the proxy traffic only refusals. */
async function stepEvents(audit: AuditLog, taskId: string): Promise<AuditEvent[]> {
  const page = { limit: STEPS_LIMIT + 1 };
  const [story, refused] = await Promise.all([
    audit.events(taskId, page, { excludeTypes: ['vm.exec', ...TRAFFIC_TYPES] }),
    audit.events(taskId, page, { types: TRAFFIC_TYPES, refusals: true }),
  ]);
  return [...story, ...refused].sort((a, b) => a.seq - b.seq).slice(0, STEPS_LIMIT + 1);
}

const TimelineQuery = z.object({
  after: AfterSeq,
  before: z.coerce.number().int().min(1).optional().catch(undefined),
  type: z.array(z.string().max(64)).max(50).catch([]),
  only: z.enum(['refusals']).optional().catch(undefined),
});

/** Reads what the task page shows. */
export async function taskPageParts(
  deps: Pick<PageDeps, 'audit' | 'verdicts' | 'clock' | 'githubWebUrl'>,
  task: Task,
  options: { steps?: boolean } = {},
): Promise<TaskPageParts> {
  const [events, state, verdict, diff] = await Promise.all([
    options.steps === false ? [] : stepEvents(deps.audit, task.id),
    deps.audit.latest(task.id, { types: ['task.state'] }),
    deps.verdicts.of(task.id),
    deps.audit.latest(task.id, { types: ['git.diff'] }),
  ]);
  const capped = events.length > STEPS_LIMIT;
  return {
    task,
    verdict,
    phase: state
      ? { state: String(state.data.state), since: state.ts }
      : { state: task.state, since: task.createdAt },
    steps: taskSteps(capped ? events.slice(0, STEPS_LIMIT) : events, task.finishedAt),
    stepsCapped: capped,
    diff,
    webUrl: deps.githubWebUrl,
    now: deps.clock.now().toISOString(),
  };
}

/** What the pages need. */
export interface PageDeps extends ViewerDeps {
  query: TaskQuery;
  audit: AuditLog;
  verdicts: ChainVerdicts;
  /** https://github.com or the GHES host, for links back to issues, PRs and check runs. */
  githubWebUrl: string;
  live: { recheckMs: number; keepAliveMs: number };
  /** Environment builds, when this airlock builds environments. */
  environments?: EnvironmentPageDeps['environments'];
}

type Env = { Variables: { viewer: Extract<Viewer, { kind: 'person' }> } };

/**
 * The server-rendered pages, for signed-in people only: the task list, a task's page, its exports
 * and its live stream. A task the person may not see answers exactly as a task that does not exist.
 */
export function pageRoutes(deps: PageDeps): Hono<Env> {
  const app = new Hono<Env>();

  app.get('/', (c) => c.redirect('/tasks', 302));
  app.get(VERIFIED_HELP, (c) => {
    const viewer = sessionViewer(c, deps);
    return c.html(
      layout({
        title: 'What verified means',
        viewer: viewer?.kind === 'person' ? pageViewer(viewer) : undefined,
        body: verifiedHelpBody(),
      }).value,
    );
  });

  app.use('/tasks', requirePerson);
  app.use('/tasks/*', requirePerson);
  app.use('/environments', requirePerson);
  app.use('/environments/*', requirePerson);
  async function requirePerson(c: Context<Env>, next: Next) {
    const viewer = sessionViewer(c, deps);
    if (viewer?.kind !== 'person') {
      const wantsPage = (c.req.header('accept') ?? '').includes('text/html');
      if (!wantsPage || c.req.path.endsWith('/live')) return c.text('Sign in first: /login', 401);
      return c.redirect(
        `/login?return_to=${encodeURIComponent(c.req.path + new URL(c.req.url).search)}`,
        302,
      );
    }
    c.set('viewer', viewer);
    c.header('cache-control', 'no-store');
    await next();
  }

  const findTask = async (viewer: Viewer, rawId: string): Promise<Task | undefined> => {
    const id = TaskId.safeParse(rawId);
    if (!id.success) return undefined;
    return deps.query.find(await viewerScope(viewer, deps), id.data);
  };
  const notFound = (c: Context<Env>) => {
    const viewer = c.get('viewer');
    return c.html(
      messagePage(
        'Task not found',
        'There is no such task, or it belongs to a repository GitHub does not say you can read.',
        pageViewer(viewer),
      ).value,
      404,
    );
  };

  app.get('/tasks', async (c) => {
    const viewer = c.get('viewer');
    const q = TaskListQuery.parse(c.req.query());
    const scope = await viewerScope(viewer, deps);
    const filter = listFilter(q);
    const [page, repositories] = await Promise.all([
      deps.query.list(scope, filter, q.page, q.per_page),
      deps.query.repositories(scope),
    ]);
    const verdicts = new Map(
      await Promise.all(page.tasks.map(async (t) => [t.id, await deps.verdicts.of(t.id)] as const)),
    );
    const now = deps.clock.now().toISOString();
    const body = taskListView(page, filter, repositories, (t) => verdicts.get(t.id)!, now);
    return c.html(layout({ title: 'Tasks', viewer: pageViewer(viewer), body, script: true }).value);
  });

  app.get('/tasks/:id', async (c) => {
    const viewer = c.get('viewer');
    const task = await findTask(viewer, c.req.param('id'));
    if (!task) return notFound(c);
    // The timeline's old address: its paging now lives under /timeline.
    if (c.req.query('after') !== undefined)
      return c.redirect(`/tasks/${task.id}/timeline?after=${AfterSeq.parse(c.req.query('after'))}`, 302);
    const parts = await taskPageParts(deps, task);
    return c.html(
      layout({
        title: taskTitle(task),
        viewer: pageViewer(viewer),
        body: taskView(parts, parts.verdict.events),
        script: true,
      }).value,
    );
  });

  app.get('/tasks/:id/timeline', async (c) => {
    const viewer = c.get('viewer');
    const task = await findTask(viewer, c.req.param('id'));
    if (!task) return notFound(c);
    const q = TimelineQuery.parse({ ...c.req.query(), type: c.req.queries('type') ?? [] });
    const filter = { types: q.type.length ? q.type : undefined, refusals: q.only === 'refusals' };
    const events = await (q.before !== undefined
      ? deps.audit.events(task.id, { beforeSeq: q.before, limit: TIMELINE_PAGE }, filter)
      : deps.audit.events(task.id, { afterSeq: q.after, limit: TIMELINE_PAGE }, filter));
    const first = events[0]?.seq;
    const last = events.at(-1)?.seq;
    const [before, after, parts, refusalSeqs, typeCounts, outcome] = await Promise.all([
      first === undefined ? [] : deps.audit.events(task.id, { beforeSeq: first, limit: 1 }, filter),
      last === undefined ? [] : deps.audit.events(task.id, { afterSeq: last, limit: 1 }, filter),
      taskPageParts(deps, task, { steps: false }),
      deps.audit.seqs(task.id, { refusals: true }, 10_000),
      deps.audit.typeCounts(task.id),
      deps.audit.latest(task.id, { types: ['task.outcome'] }),
    ]);
    const earlier = before.length ? first : undefined;
    const later = after.length ? last : undefined;
    const body = html`<div id="task-header">${taskHeader({ ...parts, view: 'timeline' })}</div>
${liveBlock(task, last ?? q.after, 'timeline')}
${timelineView({
  taskId: task.id,
  events,
  verdict: parts.verdict,
  typeCounts,
  filter: { types: q.type, refusals: filter.refusals },
  earlier,
  later,
  firstRefusal: refusalSeqs[0],
  refusals: refusalSeqs.length,
  outcome: outcome?.seq,
  live: !isTerminal(task.state),
  lastSeq: last ?? q.after,
})}`;
    return c.html(
      layout({ title: `${taskTitle(task)} · timeline`, viewer: pageViewer(viewer), body, script: true })
        .value,
    );
  });

  for (const format of ['json', 'jsonl'] as const) {
    app.get(`/tasks/:id/export.${format}`, async (c) => {
      const task = await findTask(c.get('viewer'), c.req.param('id'));
      if (!task) return notFound(c);
      return exportResponse(deps, task, format);
    });
  }

  app.get('/tasks/:id/live', async (c) => {
    const viewer = c.get('viewer');
    const task = await findTask(viewer, c.req.param('id'));
    if (!task) return c.text('Not Found', 404);
    const lastEventId = c.req.header('last-event-id');
    const view = c.req.query('view') === 'timeline' ? 'timeline' : 'steps';
    return liveTaskStream(c, {
      audit: deps.audit,
      taskId: task.id,
      afterSeq: AfterSeq.parse(lastEventId ?? c.req.query('after')),
      finished: isTerminal(task.state),
      stillAllowed: async () => scopeCovers(await viewerScope(viewer, deps), task),
      panels: async () => {
        const now = (await deps.query.find(ALL_REPOS, task.id)) ?? task;
        return taskPanels(await taskPageParts(deps, now, { steps: view === 'steps' }), view);
      },
      ...deps.live,
    });
  });

  if (deps.environments)
    app.route('/environments', environmentPages({ ...deps, environments: deps.environments }));
  else
    app.get('/environments', (c) =>
      c.html(
        messagePage(
          'No environments',
          'This airlock builds no environments: its sandbox keeps no snapshots.',
          pageViewer(c.get('viewer')),
        ).value,
      ),
    );

  return app;
}

/** A task's record as a download, in JSON (with the chain's verification) or JSON Lines. */
export async function exportResponse(
  deps: Pick<PageDeps, 'audit'>,
  task: Task,
  format: 'json' | 'jsonl',
): Promise<Response> {
  const events = await deps.audit.events(task.id);
  const body =
    format === 'json'
      ? taskRecordJson(task, events, await deps.audit.verify(task.id))
      : taskRecordJsonl(events);
  return new Response(body, {
    headers: {
      'content-type':
        format === 'json' ? 'application/json; charset=utf-8' : 'application/x-ndjson; charset=utf-8',
      'content-disposition': `attachment; filename="airlock-task-${task.id}.${format}"`,
      'cache-control': 'no-store',
    },
  });
}

function pageViewer(viewer: Extract<Viewer, { kind: 'person' }>): PageViewer {
  return { login: viewer.session.login };
}
