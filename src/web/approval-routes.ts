import { type Context, Hono } from 'hono';
import { z } from 'zod';
import type { Logger } from '../logger.ts';
import { monthOf, type SpendLedger } from '../spend/spend-ledger.ts';
import { type Approval, ApprovalError } from '../tasks/approval-store.ts';
import type { Approver } from '../tasks/approvals.ts';
import type { HeldResult } from '../tasks/held-results.ts';
import type { Task } from '../tasks/task.ts';
import { approvalDetailView, approvalListView, type PendingItem } from './approval-views.ts';
import { layout, messagePage, type PageViewer } from './layout.ts';
import { scopeCovers } from './repo-access.ts';
import { TaskId } from './request-params.ts';
import { sessionViewer, type Viewer, type ViewerDeps, viewerScope } from './viewer.ts';

/** What the approval pages need from the control plane. */
export interface WebApprovals {
  /** Every pending approval with its task. */
  pending(): Promise<PendingItem[]>;
  held(taskId: string): Promise<HeldResult | undefined>;
  spend: Pick<SpendLedger, 'ofTask' | 'byRepoMonth'>;
  /** Whether `login` has write access to the repository now, asked of GitHub with the app's token. */
  mayWrite(task: Task, login: string): Promise<boolean>;
  /** Decides a pending approval through the web channel (see decideApproval). */
  decide(input: {
    taskId: string;
    decision: 'approve' | 'reject';
    by: Approver;
    seenDigest: string;
  }): Promise<{ task: Task; approval: Approval }>;
}

const CSRF_PURPOSE = 'csrf';
const CsrfToken = z.object({ userId: z.number(), expiresAt: z.number() });
const DecisionForm = z.object({
  csrf: z.string().min(1).max(2000),
  digest: z.string().regex(/^[0-9a-f]{64}$/),
  decision: z.enum(['approve', 'reject']),
});

type Env = { Variables: { viewer: Extract<Viewer, { kind: 'person' }> } };

/**
 * The approval pages: the list of what waits in repositories the person can write to (with this
 * month's spend), one waiting task in full, and the decision. A decision is a POST carrying a
 * token sealed for this person's session (a forged cross-site request has none), the digest of
 * what the page showed (so what is approved is exactly what was seen), and is allowed only if
 * GitHub says, at that moment, that the person has write access.
 */
export function approvalRoutes(deps: ViewerDeps & { approvals: WebApprovals; log: Logger }): Hono<Env> {
  const app = new Hono<Env>();
  app.use('/approvals', requirePerson);
  app.use('/approvals/*', requirePerson);
  async function requirePerson(c: Context<Env>, next: () => Promise<void>) {
    const viewer = sessionViewer(c, deps);
    if (viewer?.kind !== 'person') {
      if (c.req.method !== 'GET') return c.text('Sign in first: /login', 401);
      return c.redirect(`/login?return_to=${encodeURIComponent(c.req.path)}`, 302);
    }
    c.set('viewer', viewer);
    c.header('cache-control', 'no-store');
    await next();
  }
  const pageViewer = (c: Context<Env>): PageViewer => ({ login: c.get('viewer').session.login });
  const csrfFor = (c: Context<Env>) => {
    const { session } = c.get('viewer');
    return deps.sealer!.seal(CSRF_PURPOSE, { userId: session.userId, expiresAt: session.expiresAt });
  };
  const csrfValid = (c: Context<Env>, token: string) => {
    const parsed = CsrfToken.safeParse(deps.sealer?.unseal(CSRF_PURPOSE, token));
    const { session } = c.get('viewer');
    return (
      parsed.success && parsed.data.userId === session.userId && parsed.data.expiresAt === session.expiresAt
    );
  };
  /** The pending item for a task the person can read, or undefined. */
  const visible = async (c: Context<Env>, rawId: string): Promise<PendingItem | undefined> => {
    const id = TaskId.safeParse(rawId);
    if (!id.success) return undefined;
    const item = (await deps.approvals.pending()).find((p) => p.task.id === id.data);
    if (!item) return undefined;
    return scopeCovers(await viewerScope(c.get('viewer'), deps), item.task) ? item : undefined;
  };
  const notWaiting = (c: Context<Env>) =>
    c.html(
      messagePage(
        'Nothing waits here',
        'This task does not wait for approval, or it belongs to a repository GitHub does not say you can read.',
        pageViewer(c),
        { href: '/approvals', text: 'All approvals' },
      ).value,
      404,
    );

  app.get('/approvals', async (c) => {
    const viewer = c.get('viewer');
    const scope = await viewerScope(viewer, deps);
    const readable = (await deps.approvals.pending()).filter((p) => scopeCovers(scope, p.task));
    const writable: PendingItem[] = [];
    const answers = new Map<string, Promise<boolean>>();
    for (const item of readable) {
      const repo = item.task.repoFullName.toLowerCase();
      if (!answers.has(repo)) answers.set(repo, deps.approvals.mayWrite(item.task, viewer.session.login));
      if (await answers.get(repo)) writable.push(item);
    }
    const { month } = monthOf(deps.clock.now());
    const spend = (await deps.approvals.spend.byRepoMonth({ month })).filter((s) =>
      scopeCovers(scope, { repoId: null, repoFullName: s.repo }),
    );
    return c.html(
      layout({ title: 'Approvals', viewer: pageViewer(c), body: approvalListView(writable, spend, month) })
        .value,
    );
  });

  const detail = async (c: Context<Env>, item: PendingItem, notice?: string, status: 200 | 409 = 200) => {
    const may = await deps.approvals.mayWrite(item.task, c.get('viewer').session.login);
    const body = approvalDetailView({
      task: item.task,
      approval: item.approval,
      held: await deps.approvals.held(item.task.id),
      spend: await deps.approvals.spend.ofTask(item.task.id),
      form: may ? { csrf: csrfFor(c) } : undefined,
      notice,
    });
    return c.html(layout({ title: `Approve ${item.task.id}`, viewer: pageViewer(c), body }).value, status);
  };

  app.get('/approvals/:id', async (c) => {
    const item = await visible(c, c.req.param('id'));
    return item ? detail(c, item) : notWaiting(c);
  });

  app.post('/approvals/:id', async (c) => {
    const form = DecisionForm.safeParse(await c.req.parseBody());
    if (!form.success || !csrfValid(c, form.data.csrf)) {
      deps.log.warn(
        { path: c.req.path, login: c.get('viewer').session.login },
        'approval refused: no valid CSRF token',
      );
      return c.html(
        messagePage(
          'Not accepted',
          'This request did not come from airlock’s own approval form. Open the approval again and decide there.',
          pageViewer(c),
          { href: '/approvals', text: 'All approvals' },
        ).value,
        403,
      );
    }
    const item = await visible(c, c.req.param('id'));
    if (!item) return notWaiting(c);
    const { session } = c.get('viewer');
    // Asked again now, not from a cache: access may have been taken away since the page was shown.
    if (!(await deps.approvals.mayWrite(item.task, session.login))) {
      return c.html(
        messagePage(
          'Write access needed',
          `GitHub says you cannot write to ${item.task.repoFullName}, so you cannot decide for it.`,
          pageViewer(c),
          { href: '/approvals', text: 'All approvals' },
        ).value,
        403,
      );
    }
    try {
      await deps.approvals.decide({
        taskId: item.task.id,
        decision: form.data.decision,
        by: { login: session.login, id: session.userId },
        seenDigest: form.data.digest,
      });
    } catch (error) {
      if (!(error instanceof ApprovalError)) throw error;
      const fresh = (await deps.approvals.pending()).find((p) => p.task.id === item.task.id);
      if (fresh) return detail(c, fresh, error.message, 409);
      return notWaiting(c);
    }
    return c.redirect(`/tasks/${item.task.id}`, 303);
  });

  return app;
}
