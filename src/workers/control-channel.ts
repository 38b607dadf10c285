import { timingSafeEqual } from 'node:crypto';
import { Hono } from 'hono';
import { z } from 'zod';
import type { AuditSink } from '../audit-sink.ts';
import type { Clock } from '../clock.ts';
import { type EnvironmentBuild, EnvironmentStore } from '../environments/environment-store.ts';
import { errorMessage, GitHubError } from '../errors.ts';
import {
  revokeTaskToken,
  type TaskCredential,
  type TaskToken,
  TOKEN_RENEW_MARGIN_MS,
} from '../github/task-token.ts';
import type { SecretRedactor } from '../secrets.ts';
import type { Store } from '../store/database.ts';
import { ACTIVE_STATES, type Task, TaskResult } from '../tasks/task.ts';
import { rowToTask } from '../tasks/task-store.ts';
import type { PromptThread } from '../tasks/task-thread.ts';
import { IssueThread } from '../tasks/task-thread.ts';

/**
 * The channel between workers and the control plane (issue 16, credentials by role). A worker
 * runs VMs, proxies and agents, and never holds the GitHub App's private key: for what needs the
 * app (a task's installation token, its prompt thread, opening its pull request) it asks the
 * control plane, which holds the key, over this HTTP API on its own internal port.
 *
 * Every request carries the workers' shared secret (`AIRLOCK_WORKER_SECRET`, a bearer token,
 * compared in constant time) and the worker's id; a request about a task is answered only while
 * that worker holds the task's lease. So a worker can obtain a token only for a task it is
 * running, and one whose lease was taken from it gets nothing more.
 */

/** What the control plane does for workers: what only the holder of the App key can do. */
export interface ControlPlaneServices {
  /** Mints a task's token (its repository, `contents: write`), audited in its chain. */
  mintTaskToken(task: Task): Promise<TaskToken>;
  /** Mints the read-only token for the other repositories the policy lets the task read, if any. */
  mintReadToken(task: Task): Promise<TaskToken | undefined>;
  /**
   * Mints an environment build's token (its repository, as a task's: the build's proxy only
   * fetches), audited in the build's chain.
   */
  mintBuildToken(build: EnvironmentBuild): Promise<TaskToken>;
  /** The task's prompt thread (frozen text plus writers' later comments). */
  promptThread(task: Task): Promise<PromptThread | undefined>;
  /** Opens (or updates) the task's pull request for a pushed result; returns it with PR details. */
  publish(task: Task, result: TaskResult): Promise<TaskResult>;
  /** The app's slug and the GitHub a worker's tasks clone from and revoke their tokens at. */
  app(): AppInfo;
}

/** What a worker learns of the GitHub App from the control plane. */
export const AppInfo = z.object({ slug: z.string().min(1), webUrl: z.url(), apiUrl: z.url() });
export type AppInfo = z.infer<typeof AppInfo>;

const WORKER_HEADER = 'x-airlock-worker';

/** The internal API's routes, mounted at the root of the control plane's internal listener. */
export function controlChannelApi(deps: {
  store: Store;
  secret: string;
  clock: Clock;
  services: ControlPlaneServices;
  log: { warn(obj: object, msg: string): void };
}): Hono {
  const app = new Hono();
  const expected = Buffer.from(`Bearer ${deps.secret}`);
  app.use('/v1/*', async (c, next) => {
    const given = Buffer.from(c.req.header('authorization') ?? '');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      deps.log.warn({ path: c.req.path }, 'internal API: request without the workers secret refused');
      return c.json(
        { error: 'this API is for airlock workers: send Authorization: Bearer $AIRLOCK_WORKER_SECRET' },
        401,
      );
    }
    if (!c.req.header(WORKER_HEADER))
      return c.json({ error: `the ${WORKER_HEADER} header names the worker` }, 400);
    await next();
  });

  /** Why a request about a task or a build is not answered. */
  type Refusal = { status: 403 | 404; error: string };

  /** The task, if the asking worker holds its lease now; else the answer to send. */
  const leased = async (taskId: string, workerId: string): Promise<Task | Refusal> => {
    const row = await deps.store.db
      .selectFrom('tasks')
      .selectAll()
      .where('id', '=', taskId)
      .executeTakeFirst();
    if (!row) return { status: 404, error: `task ${taskId} does not exist` };
    const now = deps.clock.now().toISOString();
    const active = (ACTIVE_STATES as readonly string[]).includes(row.state);
    if (!active || row.lease_owner !== workerId || (row.lease_expires_at ?? '') < now)
      return { status: 403, error: `worker ${workerId} does not hold task ${taskId} (it is ${row.state})` };
    return rowToTask(row);
  };

  /** The build, if the asking worker runs it now; else the answer to send. */
  const running = async (buildId: string, workerId: string): Promise<EnvironmentBuild | Refusal> => {
    const build = await new EnvironmentStore(deps.store, deps.clock).findBuild(buildId);
    if (!build) return { status: 404, error: `environment build ${buildId} does not exist` };
    if (build.state !== 'running' || build.host !== workerId)
      return {
        status: 403,
        error: `worker ${workerId} does not run environment build ${buildId} (it is ${build.state}${build.host ? ` on ${build.host}` : ''})`,
      };
    return build;
  };

  /** A route about the subject `:id` names, answered only while `find` gives it to the asking worker. */
  const about =
    <T extends object>(find: (id: string, workerId: string) => Promise<T | Refusal>) =>
    (handler: (subject: T, body: unknown) => Promise<unknown>) =>
    async (c: import('hono').Context) => {
      const workerId = c.req.header(WORKER_HEADER)!;
      const subject = await find(c.req.param('id') ?? '', workerId);
      if ('status' in subject) {
        deps.log.warn(
          { worker: workerId, path: c.req.path, why: subject.error },
          'internal API: request refused',
        );
        return c.json({ error: subject.error }, subject.status);
      }
      const body = c.req.method === 'POST' ? await c.req.json().catch(() => undefined) : undefined;
      try {
        return c.json((await handler(subject, body)) ?? null);
      } catch (error) {
        const status = error instanceof GitHubError ? 502 : 500;
        return c.json({ error: errorMessage(error) }, status);
      }
    };
  const withTask = about(leased);
  const withBuild = about(running);

  app.get('/v1/app', (c) => c.json(deps.services.app()));
  app.post(
    '/v1/builds/:id/token',
    withBuild((build) => deps.services.mintBuildToken(build)),
  );
  app.post(
    '/v1/tasks/:id/token',
    withTask((task) => deps.services.mintTaskToken(task)),
  );
  app.post(
    '/v1/tasks/:id/read-token',
    withTask(async (task) => (await deps.services.mintReadToken(task)) ?? null),
  );
  app.get(
    '/v1/tasks/:id/thread',
    withTask(async (task) => (await deps.services.promptThread(task)) ?? null),
  );
  app.post(
    '/v1/tasks/:id/publish',
    withTask(async (task, body) => {
      const parsed = TaskResult.safeParse(body);
      if (!parsed.success)
        throw new Error(`publish: the body is not a task result (${parsed.error.message})`);
      return deps.services.publish(task, parsed.data);
    }),
  );
  return app;
}

const MintedAnswer = z.object({
  token: z.string().min(1),
  expiresAt: z.string(),
  permissions: z.record(z.string(), z.string()),
  repositories: z.array(z.string()),
});

const ThreadAnswer = z
  .object({
    thread: IssueThread,
    editedAfterTrigger: z.boolean(),
    laterComments: z.array(z.number()),
    leftOut: z.array(z.number()),
  })
  .nullable();

/** The worker's end of the channel. */
export class ControlPlaneClient {
  readonly #url: string;
  readonly #secret: string;
  readonly #workerId: string;
  readonly #fetch: typeof fetch;

  constructor(options: { url: string; secret: string; workerId: string; fetch?: typeof fetch }) {
    this.#url = options.url.replace(/\/$/, '');
    this.#secret = options.secret;
    this.#workerId = options.workerId;
    this.#fetch = options.fetch ?? fetch;
  }

  async app(): Promise<AppInfo> {
    return AppInfo.parse(await this.#call('GET', '/v1/app'));
  }

  async mintTaskToken(taskId: string): Promise<TaskToken> {
    return MintedAnswer.parse(await this.#call('POST', `/v1/tasks/${taskId}/token`, {}));
  }

  async mintReadToken(taskId: string): Promise<TaskToken | undefined> {
    return (
      MintedAnswer.nullable().parse(await this.#call('POST', `/v1/tasks/${taskId}/read-token`, {})) ??
      undefined
    );
  }

  async mintBuildToken(buildId: string): Promise<TaskToken> {
    return MintedAnswer.parse(await this.#call('POST', `/v1/builds/${buildId}/token`, {}));
  }

  async promptThread(taskId: string): Promise<PromptThread | undefined> {
    return ThreadAnswer.parse(await this.#call('GET', `/v1/tasks/${taskId}/thread`)) ?? undefined;
  }

  async publish(taskId: string, result: TaskResult): Promise<TaskResult> {
    return TaskResult.parse(await this.#call('POST', `/v1/tasks/${taskId}/publish`, result));
  }

  async #call(method: 'GET' | 'POST', path: string, body?: unknown): Promise<unknown> {
    let response: Response;
    try {
      response = await this.#fetch(`${this.#url}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${this.#secret}`,
          [WORKER_HEADER]: this.#workerId,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(60_000),
      });
    } catch (cause) {
      throw new Error(
        `the control plane at ${this.#url} (AIRLOCK_CONTROL_URL) did not answer ${method} ${path}`,
        {
          cause,
        },
      );
    }
    const text = await response.text();
    if (!response.ok) {
      let why = text.slice(0, 300);
      try {
        why = String((JSON.parse(text) as { error?: unknown }).error ?? why);
      } catch {}
      const error = new Error(
        `the control plane refused ${method} ${path} (HTTP ${response.status}): ${why}`,
      );
      throw response.status === 502 ? new GitHubError(error.message, { status: 502 }) : error;
    }
    return JSON.parse(text);
  }
}

/**
 * A task's credential on a worker: each token is minted by the control plane (which audits it in
 * the task's chain), renewed by asking again before it expires, and revoked by the worker itself
 * (`DELETE /installation/token` needs only the token, never the App key), audited here.
 */
export function remoteCredential(deps: {
  client: ControlPlaneClient;
  /** The task's id, or the environment build's (`build`). */
  taskId: string;
  /**
   * `read`: the read-only token for the other repositories the policy allows; `build`: an
   * environment build's token for its repository.
   */
  kind: 'task' | 'read' | 'build';
  githubApiUrl: string;
  audit: AuditSink;
  redactor: SecretRedactor;
  now?: () => number;
  fetch?: typeof fetch;
}): TaskCredential {
  const now = deps.now ?? Date.now;
  const live = new Set<string>();
  let current: Promise<TaskToken> | undefined;
  let revoked = false;
  const mint = async (): Promise<TaskToken> => {
    const minted =
      deps.kind === 'task'
        ? await deps.client.mintTaskToken(deps.taskId)
        : deps.kind === 'build'
          ? await deps.client.mintBuildToken(deps.taskId)
          : await deps.client.mintReadToken(deps.taskId);
    if (!minted) throw new GitHubError(`task ${deps.taskId} may read no other repository`);
    deps.redactor.add(minted.token);
    live.add(minted.token);
    return minted;
  };
  const retire = async (token: string) => {
    await revokeTaskToken(
      { baseUrl: deps.githubApiUrl, ...(deps.fetch ? { fetch: deps.fetch } : {}) },
      token,
    );
    live.delete(token);
    deps.audit.append(deps.taskId, 'token.revoked', { by: 'worker', kind: deps.kind });
  };
  return {
    async token() {
      if (revoked) throw new GitHubError('the task has ended; its token was revoked');
      current ??= mint().catch((error: unknown) => {
        current = undefined;
        throw error;
      });
      const minted = await current;
      if (Date.parse(minted.expiresAt) - now() >= TOKEN_RENEW_MARGIN_MS) return minted.token;
      const stale = minted.token;
      current = mint();
      const fresh = await current;
      await retire(stale).catch(() => undefined);
      return fresh.token;
    },
    async revoke() {
      revoked = true;
      await current?.catch(() => undefined);
      const errors: unknown[] = [];
      for (const token of [...live]) await retire(token).catch((e: unknown) => errors.push(e));
      if (errors.length) throw errors[0];
    },
  };
}
