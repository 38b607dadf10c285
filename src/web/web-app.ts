import { Hono } from 'hono';
import { secureHeaders } from 'hono/secure-headers';
import type { AuditLog } from '../audit/audit-log.ts';
import { ChainVerdicts } from '../audit/chain-verdicts.ts';
import type { Clock } from '../clock.ts';
import { errorMessage, GitHubError } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { AirlockMetrics } from '../metrics/airlock-metrics.ts';
import type { Store } from '../store/database.ts';
import { apiRoutes } from './api-routes.ts';
import { approvalRoutes, type WebApprovals } from './approval-routes.ts';
import { authRoutes } from './auth-routes.ts';
import type { EnvironmentPageDeps } from './environment-pages.ts';
import { GitHubOAuth, UserTokenInvalid } from './github-oauth.ts';
import { LIVE_SCRIPT, messagePage, STYLESHEET } from './layout.ts';
import { pageRoutes } from './page-routes.ts';
import { RepoAccess } from './repo-access.ts';
import { Sealer } from './session-sealer.ts';
import { TaskQuery } from './task-query.ts';
import { hasAdminToken } from './viewer.ts';
import { clearSession } from './web-session.ts';

/** Everything the web UI, the JSON API and /metrics are built from. */
export interface WebAppDeps {
  store: Store;
  audit: AuditLog;
  clock: Clock;
  log: Logger;
  /** AIRLOCK_PUBLIC_URL: the origin people reach airlock at (the OAuth callback is built from it). */
  publicUrl: string;
  github: {
    webUrl: string;
    apiUrl: string;
    /** The app's OAuth credentials; without them sign-in answers that it is not configured. */
    clientId?: string | undefined;
    clientSecret?: string | undefined;
  };
  sessionSecret?: string | undefined;
  sessionHours: number;
  accessCacheSeconds: number;
  adminToken?: string | undefined;
  /**
   * GitHub logins of the operators: signed in, they see every task, local runs (which have no
   * installation to ask GitHub about) included, as the admin token does through the API.
   */
  operators?: readonly string[] | undefined;
  metrics?: AirlockMetrics;
  metricsPublic: boolean;
  /** fetch for GitHub calls (tests point nothing here: they use a real emulator). */
  fetch?: typeof fetch;
  /** Environment builds to show (absent when this airlock builds none). */
  environments?: EnvironmentPageDeps['environments'];
  /** How often a live stream re-asks about access and sends a keep-alive, in ms. */
  live?: { recheckMs?: number; keepAliveMs?: number };
  /** Pending approvals and spend (absent where nothing waits for approval, as in web-only tests). */
  approvals?: WebApprovals;
}

/**
 * Builds the web app: sign-in, the task pages, the JSON API under /api, /metrics and static assets,
 * behind security headers. Mount it after the webhook route.
 */
export function webApp(deps: WebAppDeps): Hono {
  const publicUrl = deps.publicUrl.replace(/\/$/, '');
  const oauth =
    deps.github.clientId && deps.github.clientSecret
      ? new GitHubOAuth({
          clientId: deps.github.clientId,
          clientSecret: deps.github.clientSecret,
          webUrl: deps.github.webUrl,
          apiUrl: deps.github.apiUrl,
          ...(deps.fetch ? { fetch: deps.fetch } : {}),
        })
      : undefined;
  const sealer = deps.sessionSecret ? new Sealer(deps.sessionSecret) : undefined;
  const access = oauth
    ? new RepoAccess({ source: oauth, clock: deps.clock, ttlMs: deps.accessCacheSeconds * 1000 })
    : undefined;
  const query = new TaskQuery(deps.store);
  const pageDeps = {
    query,
    audit: deps.audit,
    verdicts: new ChainVerdicts(deps.audit, deps.clock),
    operators: new Set((deps.operators ?? []).map((login) => login.toLowerCase())),
    githubWebUrl: deps.github.webUrl.replace(/\/$/, ''),
    sealer,
    access,
    clock: deps.clock,
    adminToken: deps.adminToken,
    ...(deps.environments ? { environments: deps.environments } : {}),
    live: {
      recheckMs: deps.live?.recheckMs ?? Math.max(5_000, deps.accessCacheSeconds * 1000),
      keepAliveMs: deps.live?.keepAliveMs ?? 15_000,
    },
  };

  const app = new Hono();
  app.use(
    '*',
    secureHeaders({
      contentSecurityPolicy: {
        defaultSrc: ["'none'"],
        styleSrc: ["'self'"],
        scriptSrc: ["'self'"],
        connectSrc: ["'self'"],
        imgSrc: ["'self'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
        baseUri: ["'none'"],
      },
      referrerPolicy: 'same-origin',
    }),
  );
  app.get('/static/airlock.css', (c) =>
    c.body(STYLESHEET, 200, {
      'content-type': 'text/css; charset=utf-8',
      'cache-control': 'public, max-age=3600',
    }),
  );
  app.get('/static/live.js', (c) =>
    c.body(LIVE_SCRIPT, 200, {
      'content-type': 'text/javascript; charset=utf-8',
      'cache-control': 'public, max-age=3600',
    }),
  );
  app.get('/metrics', async (c) => {
    if (!deps.metrics) return c.text('metrics are not enabled', 404);
    if (!deps.metricsPublic && !hasAdminToken(c, deps.adminToken)) {
      return c.text('send Authorization: Bearer <AIRLOCK_ADMIN_TOKEN>', 401, {
        'www-authenticate': 'Bearer',
      });
    }
    const { contentType, body } = await deps.metrics.render();
    return c.body(body, 200, { 'content-type': contentType });
  });
  app.route(
    '/',
    authRoutes({
      oauth,
      sealer,
      access,
      clock: deps.clock,
      log: deps.log,
      publicUrl,
      sessionHours: deps.sessionHours,
    }),
  );
  app.route('/api', apiRoutes(pageDeps));
  if (deps.approvals)
    app.route('/', approvalRoutes({ ...pageDeps, approvals: deps.approvals, log: deps.log }));
  app.route('/', pageRoutes(pageDeps));

  app.onError((error, c) => {
    const api = c.req.path.startsWith('/api/');
    if (error instanceof UserTokenInvalid) {
      clearSession(c, publicUrl);
      if (api || c.req.path.endsWith('/live'))
        return c.json({ error: 'signed_out', message: error.message }, 401);
      return c.redirect(`/login?return_to=${encodeURIComponent(c.req.path)}`, 302);
    }
    const upstream = error instanceof GitHubError;
    deps.log.error(
      { err: errorMessage(error), path: c.req.path },
      upstream ? 'GitHub could not be asked' : 'web request failed',
    );
    const [status, message] = upstream
      ? ([
          502,
          'GitHub could not be asked which repositories you can read; nothing is shown without its answer. Try again shortly.',
        ] as const)
      : ([500, 'Something went wrong on airlock’s side; the error is in its log.'] as const);
    if (api) return c.json({ error: upstream ? 'github_unavailable' : 'internal', message }, status);
    return c.html(
      messagePage(upstream ? 'GitHub is not answering' : 'Internal error', message).value,
      status,
    );
  });
  return app;
}
