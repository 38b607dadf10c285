import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createAppAuth } from '@octokit/auth-app';
import { Octokit } from '@octokit/rest';
import { type Airlock, buildAirlock } from '../../src/airlock.ts';
import type { Clock } from '../../src/clock.ts';
import type { EnvironmentBuilder } from '../../src/environments/environment-builder.ts';
import type { GitHubPlane } from '../../src/github/github-plane.ts';
import { SecretRedactor } from '../../src/secrets.ts';
import type { Db } from '../../src/store/database.ts';
import type { Task, TaskResult } from '../../src/tasks/task.ts';
import type { TaskRunContext, TaskRunner } from '../../src/tasks/task-runner.ts';
import { type GitHubEmulator, startGitHubEmulator } from '../emulator/index.ts';
import { pushCommit } from './git-push.ts';
import { memoryLogger } from './memory-logger.ts';
import { settled } from './settled.ts';
import { emulatorOctokit, emulatorSettings } from './test-settings.ts';

/** What a test's runner double does for one task. */
export type RunBehaviour = (task: Task, ctx: TaskRunContext, h: Harness) => Promise<TaskResult>;

/**
 * A runner double for control-plane tests (tests only: the product runs agents in microVMs).
 * By default it pushes one commit to the task's branch through the emulator's git server, starting
 * where the task says its workspace starts, as the VM runner's clone would (and failing as a clone
 * would when that ref does not exist).
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

/** The ref a task's workspace is cloned from, as the VM runner clones it. */
export function startRef(task: Task): string {
  if (task.start.from === 'own_branch') return task.branch;
  if (task.start.from === 'ref') return task.start.ref;
  return `refs/pull/${task.start.pull}/head`;
}

/** A behaviour that commits one file on top of the task's start and reports it pushed. */
export function pushFileBehaviour(file: string, content: string): RunBehaviour {
  return async (task, ctx, h) => {
    await ctx.enterPhase('running');
    const from = startRef(task);
    if (task.start.from !== 'pull_head' && !(await h.emulator.branchSha(task.repoFullName, from))) {
      throw new Error(`git clone failed: Remote branch ${from} not found in upstream origin`);
    }
    await ctx.enterPhase('pushing');
    const sha = await pushCommit({
      remote: await h.gitRemote(task.repoFullName),
      // git-push clones branches only; a fork PR's head is approximated by its base here.
      base: task.start.from === 'pull_head' ? (task.baseRef ?? 'main') : from,
      branch: task.branch,
      files: { [file]: `${content}${task.id}\n` },
      message: `airlock task ${task.id}`,
    });
    return { outcome: 'changes_pushed', headSha: sha, summary: `Edited ${file}.` };
  };
}

/**
 * A behaviour that takes the task's environment as the VM runner does (waiting for its build when
 * there is none yet), notes which one it got in `got`, then pushes like pushFileBehaviour.
 */
export function environmentBehaviour(got: Map<string, string | undefined>): RunBehaviour {
  const push = pushFileBehaviour('CHANGES.md', 'made by the test runner\n');
  return async (task, ctx, h) => {
    const lease = await h.airlock.environments?.forTask(task, ctx.signal);
    try {
      got.set(task.id, lease?.env.id);
      return await push(task, ctx, h);
    } finally {
      lease?.release();
    }
  };
}

/** A repository's git URL on the emulator carrying an installation token (tests push with it). */
export async function installationRemote(
  emulator: GitHubEmulator,
  installationId: number,
  fullName: string,
): Promise<string> {
  const auth = createAppAuth({
    appId: emulator.app.id,
    privateKey: emulator.app.privateKey,
    request: new Octokit({ baseUrl: emulator.apiUrl }).request,
  });
  const { token } = await auth({ type: 'installation', installationId });
  const [owner, name] = fullName.split('/') as [string, string];
  return emulator.gitUrl(owner, name).replace('http://', `http://x-access-token:${token}@`);
}

/** The control plane as tests see it: the GitHub plane, the task store, and a way to wait. */
export type PlaneView = GitHubPlane & { quiesce(): Promise<void> };

/** A running emulator + airlock (runner double) + webhook server, torn down by close(). */
export interface Harness {
  emulator: GitHubEmulator;
  airlock: Airlock;
  plane: PlaneView;
  db: Db;
  dir: string;
  runner: DoubleRunner;
  audit: { types(taskId: string): Promise<string[]> };
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
  options: {
    files?: Record<string, string>;
    dataDir?: string;
    env?: Record<string, string>;
    /** Settings that need the emulator (its OAuth client, say), added to `env`. */
    envFor?: (emulator: GitHubEmulator) => Record<string, string>;
    /** The clock airlock's back-offs and time limits run on (a test moves a ManualClock by hand). */
    clock?: Clock;
    /** Builds environments (a DirectoryBuilder): without one, this airlock builds none. */
    environmentBuilder?: EnvironmentBuilder;
  } = {},
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
  const redactor = new SecretRedactor();
  const { log, lines } = memoryLogger(redactor);

  let port = '0';
  const boot = () =>
    buildAirlock(
      emulatorSettings(emulator, dir, {
        PORT: port,
        AIRLOCK_MAX_CONCURRENT_TASKS: '2',
        AIRLOCK_MAX_TASKS_PER_REPO: '1',
        ...options.env,
        ...options.envFor?.(emulator),
      }),
      {
        log,
        redactor,
        runner,
        octokit: emulatorOctokit,
        pollMs: 50,
        environment: options.env ?? {},
        ...(options.clock ? { clock: options.clock } : {}),
        ...(options.environmentBuilder ? { environmentBuilder: options.environmentBuilder } : {}),
      },
    );
  let airlock = await boot();
  const view = (a: Airlock): PlaneView =>
    Object.assign(Object.create(a.github!), { quiesce: () => settled(a) });
  let plane = view(airlock);
  // A restart listens on the same port, as a restarted process would.
  port = String(airlock.github!.server.port);
  const webhookUrl = airlock.github!.server.webhookUrl;

  const harness: Harness = {
    emulator,
    get airlock() {
      return airlock;
    },
    get plane() {
      return plane;
    },
    get db() {
      return airlock.db;
    },
    dir,
    runner,
    audit: { types: async (taskId) => (await airlock.audit.events(taskId)).map((e) => e.type) },
    logLines: lines,
    webhookUrl,
    installationId,
    repo: 'acme/widgets',
    gitRemote: (fullName) => installationRemote(emulator, installationId, fullName),
    send: (event, payload, opts) => emulator.sendWebhook(webhookUrl, event, payload, opts),
    restart: async () => {
      await airlock.stop();
      airlock = await boot();
      plane = view(airlock);
    },
    close: async () => {
      // HARNESS_LOG=1 shows what airlock logged at warn and above, for a failing test.
      if (process.env.HARNESS_LOG) {
        process.stderr.write(lines.filter((l) => /"level":[456]0/.test(l)).join(''));
        const rows = airlock.db.prepare('SELECT delivery_id, status, outcome FROM deliveries').all();
        process.stderr.write(
          `${JSON.stringify((await airlock.tasks.list()).map((t) => [t.kind, t.state, t.reason, t.start]))}\n`,
        );
        process.stderr.write(`${JSON.stringify(rows)}\n`);
      }
      await airlock.stop().catch(() => {});
      await emulator.close();
      if (!options.dataDir) await rm(dir, { recursive: true, force: true });
    },
  };
  runner.harness = harness;
  return harness;
}
