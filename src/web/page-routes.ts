import { type Context, Hono, type Next } from 'hono';
import { taskRecordJson, taskRecordJsonl } from '../audit/audit-export.ts';
import type { AuditLog } from '../audit/audit-log.ts';
import { isTerminal, type Task } from '../tasks/task.ts';
import { layout, messagePage } from './layout.ts';
import { liveTaskStream } from './live-stream.ts';
import { scopeCovers } from './repo-access.ts';
import { AfterSeq, listFilter, TaskId, TaskListQuery } from './request-params.ts';
import type { TaskQuery } from './task-query.ts';
import { taskListView, taskView } from './task-views.ts';
import { sessionViewer, type Viewer, type ViewerDeps, viewerScope } from './viewer.ts';

/** Events per page of a task's timeline. */
export const TIMELINE_PAGE = 500;

/** What the pages need. */
export interface PageDeps extends ViewerDeps {
  query: TaskQuery;
  audit: AuditLog;
  /** https://github.com or the GHES host, for links back to issues, PRs and check runs. */
  githubWebUrl: string;
  live: { recheckMs: number; keepAliveMs: number };
}

type Env = { Variables: { viewer: Extract<Viewer, { kind: 'person' }> } };

/**
 * The server-rendered pages, for signed-in people only: the task list, a task's page, its exports
 * and its live stream. A task the person may not see answers exactly as a task that does not exist.
 */
export function pageRoutes(deps: PageDeps): Hono<Env> {
  const app = new Hono<Env>();

  app.get('/', (c) => c.redirect('/tasks', 302));

  app.use('/tasks', requirePerson);
  app.use('/tasks/*', requirePerson);
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
        { login: viewer.session.login },
      ).value,
      404,
    );
  };

  app.get('/tasks', async (c) => {
    const viewer = c.get('viewer');
    const q = TaskListQuery.parse(c.req.query());
    const scope = await viewerScope(viewer, deps);
    const filter = listFilter(q);
    const page = deps.query.list(scope, filter, q.page, q.per_page);
    const body = taskListView(page, filter, deps.query.repositories(scope));
    return c.html(layout({ title: 'Tasks', viewer: { login: viewer.session.login }, body }).value);
  });

  app.get('/tasks/:id', async (c) => {
    const viewer = c.get('viewer');
    const task = await findTask(viewer, c.req.param('id'));
    if (!task) return notFound(c);
    const after = AfterSeq.parse(c.req.query('after'));
    const events = deps.audit.events(task.id, { afterSeq: after, limit: TIMELINE_PAGE });
    const head = deps.audit.head(task.id);
    const lastShown = events.at(-1)?.seq ?? after;
    const more = head !== undefined && head.seq > lastShown;
    const body = taskView({
      task,
      events,
      diff: deps.audit.latest(task.id, { types: ['git.diff'] }),
      headHash: head?.hash,
      totalEvents: head?.seq ?? 0,
      nextAfter: more ? lastShown : undefined,
      webUrl: deps.githubWebUrl,
      live: !isTerminal(task.state) && !more,
    });
    return c.html(
      layout({
        title: `Task ${task.id}`,
        viewer: { login: viewer.session.login },
        body,
        script: !isTerminal(task.state),
      }).value,
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
    return liveTaskStream(c, {
      audit: deps.audit,
      taskId: task.id,
      afterSeq: AfterSeq.parse(lastEventId ?? c.req.query('after')),
      finished: isTerminal(task.state),
      stillAllowed: async () => scopeCovers(await viewerScope(viewer, deps), task),
      ...deps.live,
    });
  });

  return app;
}

/** A task's record as a download, in JSON (with the chain's verification) or JSON Lines. */
export function exportResponse(
  deps: Pick<PageDeps, 'audit'>,
  task: Task,
  format: 'json' | 'jsonl',
): Response {
  const events = deps.audit.events(task.id);
  const body =
    format === 'json' ? taskRecordJson(task, events, deps.audit.verify(task.id)) : taskRecordJsonl(events);
  return new Response(body, {
    headers: {
      'content-type':
        format === 'json' ? 'application/json; charset=utf-8' : 'application/x-ndjson; charset=utf-8',
      'content-disposition': `attachment; filename="airlock-task-${task.id}.${format}"`,
      'cache-control': 'no-store',
    },
  });
}
