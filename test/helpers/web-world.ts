import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { serve } from '@hono/node-server';
import type { Hono } from 'hono';
import type { AgentName } from '../../src/agents/agent-adapter.ts';
import { agentAdapter } from '../../src/agents/agent-registry.ts';
import { AuditLog } from '../../src/audit/audit-log.ts';
import { DEFAULT_REPO_CONFIG } from '../../src/config/repo-config.ts';
import { EnvironmentStore } from '../../src/environments/environment-store.ts';
import { AirlockMetrics } from '../../src/metrics/airlock-metrics.ts';
import { SecretRedactor } from '../../src/secrets.ts';
import { type Db, openDatabase, openSqliteStore, type Store } from '../../src/store/database.ts';
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
  store: Store;
  audit: AuditLog;
  tasks: TaskStore;
  /** Environment builds the pages show (written by tests as the builds would). */
  environments: EnvironmentStore;
  /** AIRLOCK_DATA_DIR of this world (build logs live under it). */
  dataDir: string;
  metrics: AirlockMetrics;
  clock: ManualClock;
  /** http://127.0.0.1:PORT */
  url: string;
  app: Hono;
  adminToken: string;
  logLines: string[];
  /** Creates a task (as intake would) and records a few events for it. */
  addTask(repo: string, fields?: { actor?: string; issue?: number; running?: boolean }): Promise<Task>;
  /**
   * Records a whole run as the task runner does (phases, exec audit with the guest's wrapper
   * records, the agent's events parsed from a real CLI stream in fixtures/agents, diff, push,
   * outcome, clean-up), advancing the clock between steps. `running` stops after the agent started.
   */
  addAgentRun(
    repo: string,
    run: {
      agent: AgentName;
      fixture?: string;
      script?: string[];
      title: string;
      summary?: string;
      running?: boolean;
    },
  ): Promise<Task>;
  /** A task of `airlock run` on a developer's machine: no installation, a git name as its author. */
  addLocalTask(gitName: string): Promise<Task>;
  /** Runs GitHub's web flow for `login` through airlock and the emulator; returns the Cookie header. */
  signIn(login: string): Promise<string>;
  /** GET with an optional cookie, redirects not followed. */
  get(pathname: string, headers?: Record<string, string>): Promise<Response>;
  close(): Promise<void>;
}

/**
 * acme/widgets (alice writes, bob reads), acme/vault (only alice), the app installed on acme; opal
 * reads nothing (an operator when `operators` names her).
 */
export async function startWebWorld(
  options: Partial<Pick<WebAppDeps, 'accessCacheSeconds' | 'live' | 'operators'>> = {},
): Promise<WebWorld> {
  const emulator = await startGitHubEmulator({ appSlug: 'airlock-test' });
  await emulator.createRepo('acme', 'widgets');
  await emulator.createRepo('acme', 'vault');
  for (const [login, id] of [
    ['alice', 101],
    ['bob', 102],
    ['carol', 103],
    ['opal', 106],
  ] as const) {
    emulator.addUser(login, { id });
  }
  emulator.setPermission('acme/widgets', 'alice', 'write');
  emulator.setPermission('acme/vault', 'alice', 'admin');
  emulator.setPermission('acme/widgets', 'bob', 'read');
  const installationId = emulator.installApp('acme');

  const dir = await mkdtemp(path.join(tmpdir(), 'airlock-web-'));
  const db = openDatabase(path.join(dir, 'airlock.sqlite'));
  // One SQLite connection under both, as the composition root has it.
  const store = openSqliteStore(db);
  const clock = new ManualClock();
  // As the control plane runs it: group commit.
  const audit = new AuditLog(store, clock, new SecretRedactor(), { groupCommit: { maxEvents: 512 } });
  const metrics = new AirlockMetrics(store, { processMetrics: false });
  audit.subscribe((e) => metrics.observeAuditEvent(e));
  const tasks = new TaskStore(store, clock);
  const environments = new EnvironmentStore(store, clock);
  const adminToken = randomBytes(24).toString('hex');
  const { log, lines } = memoryLogger();

  let app: Hono | undefined;
  const server = serve({ fetch: (request) => app!.fetch(request), hostname: '127.0.0.1', port: 0 });
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  app = webApp({
    store,
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
    ...(options.operators ? { operators: options.operators } : {}),
    environments: { store: environments, log: (buildId) => environments.readLog(buildId) },
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
    store,
    audit,
    tasks,
    environments,
    dataDir: dir,
    metrics,
    clock,
    url,
    app,
    adminToken,
    logLines: lines,
    addTask: async (repo, fields = {}) => {
      const issue =
        fields.issue ??
        emulator.createIssue(repo, { title: 'Make it better', user: fields.actor ?? 'alice' }).number;
      const task = await tasks.create({
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
        // As intake stores it: the issue's title.
        context: { issueTitle: 'Make it better' },
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
      await tasks.transition(task.id, 'starting');
      audit.append(task.id, 'task.state', { state: 'starting' });
      await tasks.transition(task.id, 'running');
      audit.append(task.id, 'task.state', { state: 'running' });
      if (!fields.running) {
        await tasks.transition(task.id, 'succeeded');
        audit.append(task.id, 'task.outcome', { state: 'succeeded', reason: null });
        audit.append(task.id, 'task.state', { state: 'succeeded' });
      }
      return await tasks.get(task.id);
    },
    addAgentRun: async (repo, run) => {
      const issue = emulator.createIssue(repo, { title: run.title, user: 'alice' }).number;
      let task = await tasks.create({
        installationId,
        repoFullName: repo,
        repoId: repoIds.get(repo) ?? null,
        issueNumber: issue,
        prNumber: null,
        kind: 'issue',
        baseRef: 'main',
        actorLogin: 'alice',
        actorId: 101,
        triggerEvent: 'issues',
        triggerUrl: `${emulator.webUrl}/${repo}/issues/${issue}`,
        deliveryId: randomBytes(8).toString('hex'),
        instruction: null,
        context: { issueTitle: run.title },
        start: { from: 'ref', ref: 'main' },
        config: { ...DEFAULT_REPO_CONFIG, agent: run.agent },
      });
      await recordAgentRun({ audit, tasks, clock }, task, run);
      task = await tasks.get(task.id);
      if (!run.running && task.state === 'succeeded') {
        const prNumber = emulator.state.issues.length + 100;
        task = await tasks.update(task.id, {
          prNumber,
          result: {
            outcome: 'changes_pushed',
            summary: run.summary ?? '',
            prNumber,
            prUrl: `${emulator.webUrl}/${repo}/pull/${prNumber}`,
          },
        });
      }
      return task;
    },
    addLocalTask: async (gitName) => {
      const task = await tasks.create({
        installationId: null,
        repoFullName: 'local/notes',
        repoId: null,
        issueNumber: null,
        prNumber: null,
        kind: 'local',
        baseRef: 'main',
        actorLogin: gitName,
        actorId: null,
        triggerEvent: 'local',
        triggerUrl: null,
        deliveryId: null,
        instruction: 'Tidy the notes\nand keep them short',
        context: { issueTitle: 'Tidy the notes' },
        start: { from: 'ref', ref: 'main' },
        config: { ...DEFAULT_REPO_CONFIG, agent: 'script' },
      });
      audit.append(task.id, 'task.created', {
        actor: { login: gitName, id: null },
        trigger: { event: 'local' },
        repository: task.repoFullName,
        base: 'main',
        branch: task.branch,
      });
      return task;
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
      await audit.flush();
      await store.close();
      await emulator.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The guest agent's wrapper around each command airlock runs in the VM (see airlock-guest.cjs). */
const WRAPPER = ['/usr/bin/choom', '-n', '0', '--'];

/**
 * Records one run into a task's chain in the order and shapes vm-task-runner, task-token, the
 * proxies and the scheduler write them, with a real agent stream from fixtures/agents parsed by
 * the real adapter (or a script's lines).
 */
async function recordAgentRun(
  deps: { audit: AuditLog; tasks: TaskStore; clock: ManualClock },
  task: Task,
  run: { agent: AgentName; fixture?: string; script?: string[]; summary?: string; running?: boolean },
): Promise<void> {
  const { audit, tasks, clock } = deps;
  let pid = 300;
  const exec = (argv: string[], uid = 1000, wrapped = true) => {
    pid++;
    if (wrapped)
      audit.append(task.id, 'vm.exec', {
        argv: [...WRAPPER, ...argv],
        pid,
        ppid: 1,
        uid,
        cwd: '/work/repo',
        ts: clock.now().toISOString(),
      });
    audit.append(task.id, 'vm.exec', {
      argv,
      pid,
      ppid: 1,
      uid,
      cwd: '/work/repo',
      ts: clock.now().toISOString(),
    });
  };
  const state = async (to: 'starting' | 'running' | 'pushing' | 'succeeded') => {
    await tasks.transition(task.id, to);
    audit.append(task.id, 'task.state', { state: to, reason: null });
  };
  audit.append(task.id, 'task.created', {
    actor: { login: task.actorLogin, id: task.actorId },
    trigger: { event: task.triggerEvent, deliveryId: task.deliveryId, url: task.triggerUrl },
    repository: task.repoFullName,
    base: task.baseRef,
    branch: task.branch,
  });
  audit.append(task.id, 'task.config', { config: task.config });
  clock.advance(1_200);
  await state('starting');
  audit.append(task.id, 'token.minted', {
    repository: [task.repoFullName],
    permissions: { contents: 'write' },
    expires_at: new Date(clock.now().getTime() + 3_600_000).toISOString(),
  });
  for (const argv of [
    ['/sbin/init'],
    ['modprobe', 'virtio_net'],
    ['/usr/bin/node', '/opt/airlock-guest.cjs'],
  ])
    exec(argv, 0, false);
  clock.advance(8_400);
  audit.append(task.id, 'vm.created', {
    id: `vm-${task.id}`,
    image: 'sha256:0123456789abcdef0123',
    accelerator: 'tcg',
    bootMs: 8_400,
    limits: { memMiB: 2048 },
  });
  await state('running');
  exec([
    'git',
    'clone',
    '--quiet',
    '--branch',
    'main',
    'http://10.0.2.100/git/acme/widgets.git',
    '/work/repo',
  ]);
  audit.append(task.id, 'proxy.git', {
    service: 'git-upload-pack',
    endpoint: 'info/refs',
    repo: task.repoFullName,
    decision: 'forwarded',
  });
  exec(['git', 'checkout', '--quiet', '-B', task.branch]);
  clock.advance(2_100);
  audit.append(task.id, 'task.prompt', {
    text: `You are working on ${task.repoFullName}.\n\nIssue #${task.issueNumber}: ${String((task.context as { issueTitle?: string }).issueTitle)}\n\nMake the change the issue asks for.`,
    truncated: false,
  });
  audit.append(
    task.id,
    'agent.info',
    run.agent === 'script'
      ? { agent: 'script', script: 'scripts/agent.sh' }
      : { agent: run.agent, version: '1.0.0' },
  );
  exec(
    run.agent === 'script'
      ? ['bash', 'scripts/agent.sh']
      : [run.agent === 'claude' ? 'claude' : 'codex', 'exec'],
  );
  const parser = agentAdapter(run.agent).parser({
    prompt: '',
    promptFile: '/tmp/prompt',
    repoDir: '/work/repo',
    homeDir: '/home/agent',
    proxyUrl: 'http://10.0.2.100',
    taskId: task.id,
  });
  const lines = run.fixture
    ? readFileSync(path.resolve('fixtures/agents', `${run.fixture}.jsonl`), 'utf8')
        .split('\n')
        .filter(Boolean)
    : (run.script ?? []);
  for (const line of lines) {
    clock.advance(700);
    for (const event of parser.line(line)) {
      if (event.kind === 'command') exec(['/bin/bash', '-c', event.command], 1000, false);
      audit.append(task.id, 'agent.event', event as Record<string, unknown>);
    }
  }
  audit.append(task.id, 'proxy.egress', {
    method: 'CONNECT',
    host: 'pastebin.example',
    port: 443,
    decision: 'refused',
    reason: 'not on the allowlist',
    bytes_up: 0,
    bytes_down: 0,
  });
  audit.append(task.id, 'proxy.model', {
    provider: run.agent === 'codex' ? 'openai' : 'anthropic',
    path: '/v1/messages',
    status: 200,
    usage: { inputTokens: 600, outputTokens: 150 },
    duration_ms: 900,
  });
  if (run.running) return;
  clock.advance(1_500);
  audit.append(task.id, 'agent.exit', {
    code: 0,
    signal: null,
    durationMs: 1_500 + lines.length * 700,
    events: lines.length,
  });
  exec(['git', 'add', '-A']);
  exec(['git', 'commit', '--quiet', '-F', '-']);
  audit.append(task.id, 'git.diff', {
    base: 'a'.repeat(40),
    head: 'b'.repeat(40),
    stat: ' a.txt | 2 +-\n 1 file changed, 1 insertion(+), 1 deletion(-)\n',
    patch: 'diff --git a/a.txt b/a.txt\n--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-hi\n+hello\n',
  });
  await state('pushing');
  exec(['git', 'push', '--quiet', 'origin', `HEAD:refs/heads/${task.branch}`]);
  audit.append(task.id, 'git.ref_update', {
    ref: `refs/heads/${task.branch}`,
    old: '0'.repeat(40),
    new: 'b'.repeat(40),
    decision: 'forwarded',
  });
  clock.advance(900);
  await tasks.transition(task.id, 'succeeded');
  audit.append(task.id, 'task.outcome', {
    state: 'succeeded',
    reason: null,
    result: { outcome: 'changes_pushed', summary: run.summary ?? '' },
  });
  audit.append(task.id, 'task.state', { state: 'succeeded', reason: null });
  audit.append(task.id, 'cleanup.vm', { vm: `vm-${task.id}`, destroyed: true });
  audit.append(task.id, 'cleanup.proxy', {
    tokenRevoked: true,
    usage: { inputTokens: 600, outputTokens: 150 },
  });
  audit.append(task.id, 'token.revoked', { repository: task.repoFullName });
}
