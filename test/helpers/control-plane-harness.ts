import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createAppAuth } from '@octokit/auth-app';
import { Octokit } from '@octokit/rest';
import { systemClock } from '../../src/clock.ts';
import { type ControlPlane, startControlPlane } from '../../src/control-plane.ts';
import { type Db, openDatabase } from '../../src/store/database.ts';
import type { Task, TaskResult } from '../../src/tasks/task.ts';
import type { TaskRunContext, TaskRunner } from '../../src/tasks/task-runner.ts';
import { startHttpServer } from '../../src/web/http-server.ts';
import { type GitHubEmulator, startGitHubEmulator } from '../emulator/index.ts';
import { pushCommit } from './git-push.ts';
import { memoryLogger } from './memory-logger.ts';
import { RecordingAudit } from './recording-audit.ts';

/** What a test's runner double does for one task. */
export type RunBehaviour = (task: Task, ctx: TaskRunContext, h: Harness) => Promise<TaskResult>;

/**
 * A runner double for control-plane tests (tests only: the product runs agents in microVMs).
 * By default it pushes one commit to the task's branch through the emulator's git server.
 */
export class DoubleRunner implements TaskRunner {
  behaviour: RunBehaviour = pushFileBehaviour('CHANGES.md', 'made by the test runner\n');
  readonly runs: string[] = [];
  harness!: Harness;
  run(task: Task, ctx: TaskRunContext): Promise<TaskResult> {
    this.runs.push(task.id);
    return this.behaviour(task, ctx, this.harness);
  }
}

/** A behaviour that commits one file to the task branch and reports it pushed. */
export function pushFileBehaviour(file: string, content: string): RunBehaviour {
  return async (task, ctx, h) => {
    ctx.enterPhase('running');
    const exists = await h.emulator.branchSha(task.repoFullName, task.branch);
    ctx.enterPhase('pushing');
    const sha = await pushCommit({
      remote: await h.gitRemote(task.repoFullName),
      base: exists ? task.branch : (task.baseRef ?? 'main'),
      branch: task.branch,
      files: { [file]: `${content}${task.id}\n` },
      message: `airlock task ${task.id}`,
    });
    return { outcome: 'changes_pushed', headSha: sha, summary: `Edited ${file}.` };
  };
}

/** A running emulator + control plane + webhook server, torn down by close(). */
export interface Harness {
  emulator: GitHubEmulator;
  plane: ControlPlane;
  db: Db;
  dir: string;
  runner: DoubleRunner;
  audit: RecordingAudit;
  logLines: string[];
  webhookUrl: string;
  installationId: number;
  repo: string;
  gitRemote(fullName: string): Promise<string>;
  send(
    event: string,
    payload: unknown,
    options?: { deliveryId?: string; secret?: string },
  ): Promise<Response>;
  restart(): Promise<void>;
  close(): Promise<void>;
}

/** Starts the world for a control-plane test: repo acme/widgets, alice (write), the app installed. */
export async function startHarness(
  options: { files?: Record<string, string>; dataDir?: string } = {},
): Promise<Harness> {
  const emulator = await startGitHubEmulator({ appSlug: 'airlock-test' });
  const dir = options.dataDir ?? (await mkdtemp(path.join(tmpdir(), 'airlock-cp-')));
  await emulator.createRepo('acme', 'widgets', { files: { 'README.md': '# widgets\n', ...options.files } });
  emulator.addUser('alice', { id: 101 });
  emulator.addUser('bob', { id: 102 });
  emulator.addUser('renovate', { id: 103, type: 'Bot' });
  emulator.setPermission('acme/widgets', 'alice', 'write');
  emulator.setPermission('acme/widgets', 'bob', 'read');
  const installationId = emulator.installApp('acme');
  const runner = new DoubleRunner();
  const audit = new RecordingAudit();
  const { log, lines } = memoryLogger();

  let db = openDatabase(path.join(dir, 'airlock.sqlite'));
  const boot = () =>
    startControlPlane({
      db,
      clock: systemClock,
      log,
      audit,
      github: {
        appId: emulator.app.id,
        privateKey: emulator.app.privateKey,
        webhookSecret: emulator.app.webhookSecret,
        apiUrl: emulator.apiUrl,
        appSlug: emulator.app.slug,
      },
      publicUrl: 'http://airlock.test',
      runner,
      reaper: { reapOrphans: async () => [] },
      limits: { maxConcurrent: 2, maxPerRepo: 1 },
      octokitTuning: { retryBaseMs: 5 },
      pollMs: 50,
    });
  let plane = await boot();
  // Restarts swap `plane`; the listener always hands deliveries to the current one.
  const server = await startHttpServer({
    host: '127.0.0.1',
    port: 0,
    webhooks: (req, res) => plane.webhooks(req, res),
  });
  const webhookUrl = server.webhookUrl;

  const harness: Harness = {
    emulator,
    get plane() {
      return plane;
    },
    get db() {
      return db;
    },
    dir,
    runner,
    audit,
    logLines: lines,
    webhookUrl,
    installationId,
    repo: 'acme/widgets',
    gitRemote: async (fullName) => {
      const auth = createAppAuth({
        appId: emulator.app.id,
        privateKey: emulator.app.privateKey,
        request: new Octokit({ baseUrl: emulator.apiUrl }).request,
      });
      const { token } = await auth({ type: 'installation', installationId });
      const [owner, name] = fullName.split('/') as [string, string];
      return emulator.gitUrl(owner, name).replace('http://', `http://x-access-token:${token}@`);
    },
    send: (event, payload, opts) => emulator.sendWebhook(webhookUrl, event, payload, opts),
    restart: async () => {
      await plane.stop();
      db.close();
      db = openDatabase(path.join(dir, 'airlock.sqlite'));
      plane = await boot();
    },
    close: async () => {
      await plane.stop().catch(() => {});
      server.close();
      db.close();
      await emulator.close();
      if (!options.dataDir) await rm(dir, { recursive: true, force: true });
    },
  };
  runner.harness = harness;
  return harness;
}
