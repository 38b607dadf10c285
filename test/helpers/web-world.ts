import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { serve } from '@hono/node-server';
import type { Hono } from 'hono';
import { AuditLog } from '../../src/audit/audit-log.ts';
import { DEFAULT_REPO_CONFIG } from '../../src/config/repo-config.ts';
import { AirlockMetrics } from '../../src/metrics/airlock-metrics.ts';
import { SecretRedactor } from '../../src/secrets.ts';
import { type Db, openDatabase } from '../../src/store/database.ts';
import type { Task } from '../../src/tasks/task.ts';
import { TaskStore } from '../../src/tasks/task-store.ts';
import { type WebAppDeps, webApp } from '../../src/web/web-app.ts';
import { type GitHubEmulator, startGitHubEmulator } from '../emulator/index.ts';
import { emulatorOAuth } from '../emulator/routes-oauth.ts';
import { ManualClock } from './manual-clock.ts';
import { memoryLogger } from './memory-logger.ts';

/** A running web UI over a real database, signing in against the GitHub emulator's OAuth. */
export interface WebWorld {
  emulator: GitHubEmulator;
  db: Db;
  audit: AuditLog;
  tasks: TaskStore;
  metrics: AirlockMetrics;
  clock: ManualClock;
  /** http://127.0.0.1:PORT */
  url: string;
  app: Hono;
  adminToken: string;
  logLines: string[];
  /** Creates a task (as intake would) and records a few events for it. */
  addTask(repo: string, fields?: { actor?: string; issue?: number; running?: boolean }): Task;
  /** Runs GitHub's web flow for `login` through airlock and the emulator; returns the Cookie header. */
  signIn(login: string): Promise<string>;
  /** GET with an optional cookie, redirects not followed. */
  get(pathname: string, headers?: Record<string, string>): Promise<Response>;
  close(): Promise<void>;
}

/** acme/widgets (alice writes, bob reads), acme/vault (only alice), the app installed on acme. */
export async function startWebWorld(
  options: Partial<Pick<WebAppDeps, 'accessCacheSeconds' | 'live'>> = {},
): Promise<WebWorld> {
  const emulator = await startGitHubEmulator({ appSlug: 'airlock-test' });
  await emulator.createRepo('acme', 'widgets');
  await emulator.createRepo('acme', 'vault');
  for (const [login, id] of [
    ['alice', 101],
    ['bob', 102],
    ['carol', 103],
  ] as const) {
    emulator.addUser(login, { id });
  }
  emulator.setPermission('acme/widgets', 'alice', 'write');
  emulator.setPermission('acme/vault', 'alice', 'admin');
  emulator.setPermission('acme/widgets', 'bob', 'read');
  const installationId = emulator.installApp('acme');

  const dir = await mkdtemp(path.join(tmpdir(), 'airlock-web-'));
  const db = openDatabase(path.join(dir, 'airlock.sqlite'));
  const clock = new ManualClock();
  // As the control plane runs it: group commit.
  const audit = new AuditLog(db, clock, new SecretRedactor(), { groupCommit: { maxEvents: 512 } });
  const metrics = new AirlockMetrics(db, { processMetrics: false });
  audit.subscribe((e) => metrics.observeAuditEvent(e));
  const tasks = new TaskStore(db, clock);
  const adminToken = randomBytes(24).toString('hex');
  const { log, lines } = memoryLogger();

  let app: Hono | undefined;
  const server = serve({ fetch: (request) => app!.fetch(request), hostname: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  app = webApp({
    db,
    audit,
    clock,
    log,
    publicUrl: url,
    github: {
      webUrl: emulator.webUrl,
      apiUrl: emulator.apiUrl,
      clientId: emulator.app.clientId,
      clientSecret: emulator.app.clientSecret,
    },
    sessionSecret: randomBytes(32).toString('hex'),
    sessionHours: 8,
    accessCacheSeconds: options.accessCacheSeconds ?? 60,
    adminToken,
    metrics,
    metricsPublic: true,
    fetch: metrics.countGitHubErrors(),
    ...(options.live ? { live: options.live } : {}),
  });

  const repoIds = new Map([...emulator.state.repos.values()].map((r) => [r.fullName, r.id]));
  const get = (pathname: string, headers: Record<string, string> = {}) =>
    fetch(new URL(pathname, url), { redirect: 'manual', headers });
  const cookiesOf = (response: Response) =>
    response.headers
      .getSetCookie()
      .map((c) => c.split(';')[0]!)
      .filter((c) => !c.endsWith('='));

  return {
    emulator,
    db,
    audit,
    tasks,
    metrics,
    clock,
    url,
    app,
    adminToken,
    logLines: lines,
    addTask: (repo, fields = {}) => {
      const issue =
        fields.issue ??
        emulator.createIssue(repo, { title: 'Make it better', user: fields.actor ?? 'alice' }).number;
      const task = tasks.create({
        installationId,
        repoFullName: repo,
        repoId: repoIds.get(repo) ?? null,
        issueNumber: issue,
        prNumber: null,
        kind: 'issue',
        baseRef: 'main',
        actorLogin: fields.actor ?? 'alice',
        actorId: 101,
        triggerEvent: 'issues',
        triggerUrl: `${emulator.webUrl}/${repo}/issues/${issue}`,
        deliveryId: randomBytes(8).toString('hex'),
        instruction: null,
        context: {},
        start: { from: 'ref', ref: 'main' },
        config: DEFAULT_REPO_CONFIG,
      });
      audit.append(task.id, 'task.created', {
        actor: { login: task.actorLogin, id: task.actorId },
        trigger: { event: 'issues', deliveryId: task.deliveryId, url: task.triggerUrl },
        repository: repo,
        base: 'main',
        branch: task.branch,
      });
      audit.append(task.id, 'task.prompt', { text: `Secret plans of ${repo}: make it better` });
      audit.append(task.id, 'proxy.egress', {
        method: 'CONNECT',
        host: 'evil.example',
        port: 443,
        decision: 'refused',
      });
      audit.append(task.id, 'git.diff', {
        base: 'a'.repeat(40),
        head: 'b'.repeat(40),
        stat: ' README.md | 2 +-',
        patch: `--- a/README.md\n+++ b/README.md\n@@ -1 +1 @@\n-# old ${repo}\n+# new ${repo}\n`,
      });
      tasks.transition(task.id, 'starting');
      audit.append(task.id, 'task.state', { state: 'starting' });
      tasks.transition(task.id, 'running');
      audit.append(task.id, 'task.state', { state: 'running' });
      if (!fields.running) {
        tasks.transition(task.id, 'succeeded');
        audit.append(task.id, 'task.outcome', { state: 'succeeded', reason: null });
        audit.append(task.id, 'task.state', { state: 'succeeded' });
      }
      return tasks.get(task.id);
    },
    signIn: async (login) => {
      emulatorOAuth(emulator.state).signInAs(login);
      const start = await get('/login?return_to=/tasks');
      const signInCookie = cookiesOf(start).join('; ');
      const authorize = await fetch(start.headers.get('location')!, { redirect: 'manual' });
      const callback = new URL(authorize.headers.get('location')!);
      const done = await get(callback.pathname + callback.search, { cookie: signInCookie });
      if (done.status !== 302) throw new Error(`sign-in failed: ${done.status} ${await done.text()}`);
      return cookiesOf(done).join('; ');
    },
    get,
    close: async () => {
      (server as import('node:http').Server).closeAllConnections();
      server.close();
      db.close();
      await emulator.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
