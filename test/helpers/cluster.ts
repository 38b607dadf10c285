import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type Airlock, buildAirlock } from '../../src/airlock.ts';
import { loadAppConfig } from '../../src/config/app-config.ts';
import type { EnvironmentBuilder } from '../../src/environments/environment-builder.ts';
import { SecretRedactor } from '../../src/secrets.ts';
import type { Task, TaskResult } from '../../src/tasks/task.ts';
import type { TaskRunContext, TaskRunner } from '../../src/tasks/task-runner.ts';
import { ControlPlaneClient } from '../../src/workers/control-channel.ts';
import { type GitHubEmulator, startGitHubEmulator } from '../emulator/index.ts';
import { pushCommit } from './git-push.ts';
import { memoryLogger } from './memory-logger.ts';
import { emulatorOctokit, emulatorSettings } from './test-settings.ts';
import { createTestDatabase } from './test-store.ts';
import { examplePayload } from './webhook-examples.ts';

export const WORKER_SECRET = 'worker-secret-'.padEnd(48, 'x');

/**
 * A runner double for worker tests (tests only: the product's worker runs VmTaskRunner). Like the
 * VM runner's proxy it holds no App key: it asks the control plane for the task's token over the
 * internal API, as the worker it runs in, and pushes the task's branch with it. `hold` keeps a
 * task running until it is aborted (cancelled, shut down, or its process killed).
 */
export class WorkerRunnerDouble implements TaskRunner {
  readonly started: string[] = [];
  hold: (task: Task) => boolean = () => false;
  /** Resolves a run's wait before pushing; set to make tasks run at the same time. */
  gate: Promise<void> = Promise.resolve();

  readonly options: { controlUrl: string; workerId: string; gitWebUrl: string };

  constructor(options: { controlUrl: string; workerId: string; gitWebUrl: string }) {
    this.options = options;
  }

  async run(task: Task, ctx: TaskRunContext): Promise<TaskResult> {
    this.started.push(task.id);
    await ctx.enterPhase('running');
    const client = new ControlPlaneClient({
      url: this.options.controlUrl,
      secret: WORKER_SECRET,
      workerId: this.options.workerId,
    });
    const { token } = await client.mintTaskToken(task.id);
    if (this.hold(task)) await aborted(ctx.signal);
    await Promise.race([this.gate, aborted(ctx.signal)]);
    await ctx.enterPhase('pushing');
    const [owner, name] = task.repoFullName.split('/') as [string, string];
    const remote = `${this.options.gitWebUrl.replace('http://', `http://x-access-token:${token}@`)}/${owner}/${name}.git`;
    const sha = await pushCommit({
      remote,
      base: task.baseRef ?? 'main',
      branch: task.branch,
      files: { 'WORKER.md': `made on ${this.options.workerId} for ${task.id}\n` },
      message: `airlock task ${task.id}`,
    });
    return {
      outcome: 'changes_pushed',
      headSha: sha,
      summary: `Edited WORKER.md on ${this.options.workerId}.`,
    };
  }
}

function aborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    if (signal.aborted) reject(signal.reason);
    signal.addEventListener('abort', () => reject(signal.reason), { once: true });
  });
}

/** Settings of a worker process (no GitHub App settings: a worker refuses them). */
export function workerSettings(options: {
  databaseUrl: string;
  controlUrl: string;
  name: string;
  dataDir: string;
  env?: Record<string, string>;
}) {
  return loadAppConfig({
    AIRLOCK_ROLE: 'worker',
    DATABASE_URL: options.databaseUrl,
    AIRLOCK_CONTROL_URL: options.controlUrl,
    AIRLOCK_WORKER_SECRET: WORKER_SECRET,
    AIRLOCK_WORKER_NAME: options.name,
    AIRLOCK_PUBLIC_URL: 'http://airlock.test',
    AIRLOCK_DATA_DIR: options.dataDir,
    AIRLOCK_MAX_CONCURRENT_TASKS: '2',
    AIRLOCK_LEASE_SECONDS: '3',
    ...options.env,
  });
}

/** Control planes and workers on one PostgreSQL database, against the GitHub emulator. */
export interface Cluster {
  gh: GitHubEmulator;
  databaseUrl: string;
  installationId: number;
  controls: Airlock[];
  workers: Array<{ name: string; airlock: Airlock; runner: WorkerRunnerDouble }>;
  controlUrl: string;
  logLines: string[];
  /**
   * Starts a worker; `wrap` may put something around its runner double (say, an environment's
   * restore), and `environmentBuilder` builds its environments.
   */
  startWorker(
    name: string,
    extra?: {
      environmentBuilder?: EnvironmentBuilder;
      wrap?: (runner: WorkerRunnerDouble, airlock: () => Airlock) => TaskRunner;
    },
  ): Promise<{ name: string; airlock: Airlock; runner: WorkerRunnerDouble }>;
  /** Labels a new issue of acme/widgets for the agent through a control plane's webhook endpoint. */
  labelIssue(title: string, control?: number): Promise<number>;
  comment(issueNumber: number, body: string): Promise<void>;
  close(): Promise<void>;
}

export async function startCluster(
  options: {
    controls?: number;
    workers?: string[];
    /** An empty PostgreSQL database; by default a new one in the test run's cluster. */
    databaseUrl?: string;
    /** How often every process's loops poll, in ms: 50 by default; null for the product's own. */
    pollMs?: number | null;
  } = {},
): Promise<Cluster> {
  const gh = await startGitHubEmulator({ appSlug: 'airlock-test' });
  await gh.createRepo('acme', 'widgets', { files: { 'README.md': '# widgets\n' } });
  gh.addUser('alice', { id: 101 });
  gh.setPermission('acme/widgets', 'alice', 'write');
  const installationId = gh.installApp('acme');
  const databaseUrl = options.databaseUrl ?? (await createTestDatabase());
  const dirs: string[] = [];
  const dir = async () => {
    const made = await mkdtemp(path.join(tmpdir(), 'airlock-cluster-'));
    dirs.push(made);
    return made;
  };
  const redactor = new SecretRedactor();
  const { log, lines } = memoryLogger(redactor);
  const polling = options.pollMs === null ? {} : { pollMs: options.pollMs ?? 50 };
  const controls: Airlock[] = [];
  for (let i = 0; i < (options.controls ?? 1); i++) {
    const settings = emulatorSettings(gh, await dir(), {
      AIRLOCK_ROLE: 'control',
      DATABASE_URL: databaseUrl,
      AIRLOCK_WORKER_SECRET: WORKER_SECRET,
      AIRLOCK_INTERNAL_PORT: '0',
      AIRLOCK_LEASE_SECONDS: '3',
      AIRLOCK_MAX_TASKS_PER_REPO: '4',
    });
    controls.push(await buildAirlock(settings, { log, redactor, octokit: emulatorOctokit, ...polling }));
  }
  const controlUrl = `http://127.0.0.1:${controls[0]!.internal!.port}`;
  const workers: Cluster['workers'] = [];
  const startWorker: Cluster['startWorker'] = async (name, extra = {}) => {
    const runner = new WorkerRunnerDouble({ controlUrl, workerId: name, gitWebUrl: gh.webUrl });
    let built: Airlock | undefined;
    const ports = {
      log,
      redactor,
      runner: extra.wrap ? extra.wrap(runner, () => built!) : runner,
      ...(extra.environmentBuilder ? { environmentBuilder: extra.environmentBuilder } : {}),
      ...polling,
    };
    const settings = workerSettings({
      databaseUrl,
      controlUrl,
      name,
      dataDir: await dir(),
      env: { AIRLOCK_MAX_TASKS_PER_REPO: '4' },
    });
    const airlock = await buildAirlock(settings, ports);
    built = airlock;
    const worker = { name, airlock, runner };
    workers.push(worker);
    return worker;
  };
  for (const name of options.workers ?? []) await startWorker(name);
  let deliveries = 0;
  const world = (login = 'alice') => ({
    repo: { id: 1, fullName: 'acme/widgets' },
    sender: { login, id: 101, type: 'User' },
    installationId,
  });
  const send = async (control: number, event: string, payload: unknown) => {
    const answer = await gh.sendWebhook(controls[control]!.github!.server.webhookUrl, event, payload, {
      deliveryId: `cluster-${++deliveries}`,
    });
    if (!answer.ok) throw new Error(`webhook refused: HTTP ${answer.status}`);
  };
  return {
    gh,
    databaseUrl,
    installationId,
    controls,
    workers,
    controlUrl,
    logLines: lines,
    startWorker,
    async labelIssue(title, control = 0) {
      const issue = gh.createIssue('acme/widgets', { title, user: 'alice' });
      const payload = examplePayload('issues', 'labeled', world());
      payload.issue.number = issue.number;
      payload.issue.title = title;
      payload.issue.pull_request = undefined;
      payload.label = { ...payload.label, name: 'airlock' };
      await send(control, 'issues', payload);
      return issue.number;
    },
    async comment(issueNumber, body) {
      const payload = examplePayload('issue_comment', 'created', world());
      payload.issue.number = issueNumber;
      payload.issue.pull_request = undefined;
      payload.comment.body = body;
      payload.comment.id = 9000 + deliveries;
      payload.comment.performed_via_github_app = null;
      await send(0, 'issue_comment', payload);
    },
    async close() {
      for (const w of workers) await w.airlock.stop().catch(() => {});
      for (const c of controls) await c.stop().catch(() => {});
      await gh.close();
      for (const d of dirs) await rm(d, { recursive: true, force: true });
    },
  };
}
