import { type Context, Hono, type Next } from 'hono';
import { z } from 'zod';
import type { Task } from '../tasks/task.ts';
import { exportResponse, type PageDeps } from './page-routes.ts';
import { AfterSeq, listFilter, TaskId, TaskListQuery } from './request-params.ts';
import { hasAdminToken, sessionViewer, type Viewer, viewerScope } from './viewer.ts';

type Env = { Variables: { viewer: Viewer } };

const EventsLimit = z.coerce.number().int().min(1).max(1000).catch(1000).default(1000);
const ExportFormat = z.enum(['json', 'jsonl']).catch('json').default('json');

/**
 * The JSON API (mounted at /api): the admin token sees every task; a signed-in person's cookie
 * sees what the pages show them. Unknown and unreadable tasks are the same 404.
 */
export function apiRoutes(deps: PageDeps): Hono<Env> {
  const app = new Hono<Env>();

  const authenticate = async (c: Context<Env>, next: Next) => {
    const viewer: Viewer | undefined = hasAdminToken(c, deps.adminToken)
      ? { kind: 'admin' }
      : sessionViewer(c, deps);
    if (!viewer) {
      c.header('www-authenticate', 'Bearer realm="airlock"');
      return c.json(
        {
          error: 'unauthorized',
          message: 'send Authorization: Bearer <AIRLOCK_ADMIN_TOKEN>, or sign in at /login',
        },
        401,
      );
    }
    c.set('viewer', viewer);
    c.header('cache-control', 'no-store');
    await next();
  };
  app.use('/tasks', authenticate);
  app.use('/tasks/*', authenticate);

  const findTask = async (c: Context<Env>): Promise<Task | undefined> => {
    const id = TaskId.safeParse(c.req.param('id'));
    if (!id.success) return undefined;
    return deps.query.find(await viewerScope(c.get('viewer'), deps), id.data);
  };
  const notFound = (c: Context<Env>) => c.json({ error: 'not_found', message: 'no such task' }, 404);

  app.get('/tasks', async (c) => {
    const q = TaskListQuery.parse(c.req.query());
    const scope = await viewerScope(c.get('viewer'), deps);
    const page = await deps.query.list(scope, listFilter(q), q.page, q.per_page);
    return c.json({ tasks: page.tasks, page: page.page, per_page: page.perPage, total: page.total });
  });

  app.get('/tasks/:id', async (c) => {
    const task = await findTask(c);
    if (!task) return notFound(c);
    const [head, verdict] = await Promise.all([deps.audit.head(task.id), deps.verdicts.of(task.id)]);
    return c.json({
      task,
      chain: {
        events: head?.seq ?? 0,
        head_hash: head?.hash ?? null,
        verified: verdict.state === 'verified',
      },
    });
  });

  app.get('/tasks/:id/events', async (c) => {
    const task = await findTask(c);
    if (!task) return notFound(c);
    const limit = EventsLimit.parse(c.req.query('limit'));
    const events = await deps.audit.events(task.id, {
      afterSeq: AfterSeq.parse(c.req.query('after')),
      limit,
    });
    const last = events.at(-1)?.seq;
    return c.json({ events, next_after: events.length === limit && last !== undefined ? last : null });
  });

  app.get('/tasks/:id/verify', async (c) => {
    const task = await findTask(c);
    if (!task) return notFound(c);
    return c.json(await deps.audit.verify(task.id));
  });

  app.get('/tasks/:id/export', async (c) => {
    const task = await findTask(c);
    if (!task) return notFound(c);
    return exportResponse(deps, task, ExportFormat.parse(c.req.query('format')));
  });

  return app;
}
