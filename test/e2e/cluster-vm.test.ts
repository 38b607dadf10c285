import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { verifyAuditChains } from '../../src/audit/verify-chain.ts';
import { systemClock } from '../../src/clock.ts';
import { openStore, type Store } from '../../src/store/database.ts';
import { isTerminal, type Task } from '../../src/tasks/task.ts';
import { TaskStore } from '../../src/tasks/task-store.ts';
import { type GitHubEmulator, startGitHubEmulator } from '../emulator/index.ts';
import { type AirlockProcess, freePort, startAirlockProcess } from '../helpers/airlock-process.ts';
import { WORKER_SECRET } from '../helpers/cluster.ts';
import { processMemoryContains } from '../helpers/process-memory.ts';
import { processesNaming } from '../helpers/processes.ts';
import { createTestDatabase } from '../helpers/test-store.ts';
import { testVmImage } from '../helpers/vm-image.ts';
import { waitFor } from '../helpers/wait-for.ts';
import { examplePayload } from '../helpers/webhook-examples.ts';

// airlock as it is deployed on several hosts (issue 16), each role in its own process as
// `airlock control` and `airlock worker` run it, on one PostgreSQL database: two control planes holding the GitHub App key
// (webhooks go to both), and two workers running real microVMs, each talking to its own control
// plane's internal API. Twenty labelled issues become twenty pull requests; one worker is killed
// with SIGKILL mid-task: its task is recovered once, its VM reaped when it comes back, and no
// worker's memory ever holds the App key.
const TASKS = 20;
const CONFIG =
  'agent: script\nscript: scripts/agent.sh\nlimits:\n  cpus: 1\n  memory_mib: 512\n  disk_mib: 512\n';
let gh: GitHubEmulator;
let dir: string;
const controls: AirlockProcess[] = [];
const controlUrls: string[] = [];
const workers = new Map<string, { env: Record<string, string>; process: AirlockProcess }>();
let store: Store;
let tasks: TaskStore;
let installationId: number;
let deliveries = 0;

beforeAll(async () => {
  const image = testVmImage();
  gh = await startGitHubEmulator({ appSlug: 'airlock-cluster' });
  for (const [name, agent] of [
    [
      'widgets',
      '#!/bin/bash\necho "Hello from $(hostname)" > "greeting-$RANDOM$RANDOM.txt"\necho "greeted"\n',
    ],
    // Works long enough to be killed under.
    ['slow', '#!/bin/bash\necho "working"\nsleep 600\n'],
  ] as const) {
    await gh.createRepo('acme', name, {
      files: { 'greeting.txt': 'Hello\n', 'scripts/agent.sh': agent, '.github/airlock.yml': CONFIG },
    });
    gh.setPermission(`acme/${name}`, 'alice', 'write');
  }
  // A repository with an environment: its agent fails unless the build's setup ran.
  await gh.createRepo('acme', 'tools', {
    files: {
      'scripts/setup.sh': '#!/bin/bash\nset -e\nmkdir -p .deps && echo "built on $(hostname)" > .deps/made\n',
      'scripts/agent.sh': '#!/bin/bash\nset -e\ncat .deps/made > setup-seen.txt\necho "saw the setup"\n',
      '.gitignore': '.deps/\n',
      '.github/airlock.yml': `${CONFIG}environment:\n  setup: [bash scripts/setup.sh]\n`,
    },
  });
  gh.setPermission('acme/tools', 'alice', 'write');
  gh.addUser('alice', { id: 101 });
  installationId = gh.installApp('acme');
  dir = await mkdtemp(path.join(tmpdir(), 'airlock-cluster-vm-'));
  const databaseUrl = await createTestDatabase();
  store = await openStore({ url: databaseUrl });
  tasks = new TaskStore(store, systemClock);
  const common = {
    DATABASE_URL: databaseUrl,
    AIRLOCK_WORKER_SECRET: WORKER_SECRET,
    AIRLOCK_LEASE_SECONDS: '10',
    AIRLOCK_MAX_TASKS_PER_REPO: '4',
    LOG_LEVEL: 'info',
  };
  const internal: string[] = [];
  for (const name of ['control-a', 'control-b']) {
    const [port, internalPort] = [await freePort(), await freePort()];
    controlUrls.push(`http://127.0.0.1:${port}`);
    internal.push(`http://127.0.0.1:${internalPort}`);
    controls.push(
      await startAirlockProcess(
        {
          ...common,
          AIRLOCK_ROLE: 'control',
          HOST: '127.0.0.1',
          PORT: String(port),
          AIRLOCK_INTERNAL_PORT: String(internalPort),
          AIRLOCK_PUBLIC_URL: `http://127.0.0.1:${port}`,
          APP_ID: String(gh.app.id),
          PRIVATE_KEY: gh.app.privateKey,
          WEBHOOK_SECRET: gh.app.webhookSecret,
          GITHUB_API_URL: gh.apiUrl,
          GITHUB_WEB_URL: gh.url,
          AIRLOCK_DATA_DIR: path.join(dir, name),
        },
        { cwd: dir, command: 'control' },
      ),
    );
  }
  for (const [i, name] of ['vm-host-1', 'vm-host-2'].entries()) {
    const env = {
      ...common,
      AIRLOCK_ROLE: 'worker',
      AIRLOCK_PUBLIC_URL: controlUrls[i]!,
      AIRLOCK_CONTROL_URL: internal[i]!,
      AIRLOCK_WORKER_NAME: name,
      AIRLOCK_DATA_DIR: path.join(dir, name),
      AIRLOCK_CACHE_DIR: path.dirname(path.dirname(image.dir)),
      AIRLOCK_ACCEL: 'tcg',
      // One VM at a time per worker: CI runs another VM test file beside this one on two cores.
      AIRLOCK_MAX_CONCURRENT_TASKS: '1',
    };
    workers.set(name, {
      env,
      process: await startAirlockProcess(env, { cwd: dir, timeoutMs: 300_000, command: 'worker' }),
    });
  }
}, 900_000);

afterAll(async () => {
  // What each process logged, for a failure to be read after (test/artifacts is not committed).
  const logs = fileURLToPath(new URL('../artifacts/cluster-vm/', import.meta.url));
  await mkdir(logs, { recursive: true });
  for (const [i, control] of controls.entries())
    await writeFile(path.join(logs, `control-${i}.log`), control.output());
  for (const [name, worker] of workers)
    await writeFile(path.join(logs, `${name}.log`), worker.process.output());
  for (const p of [...[...workers.values()].map((w) => w.process), ...controls])
    if (p.child.exitCode === null) p.child.kill('SIGKILL');
  await store?.close();
  await gh?.close();
  await rm(dir, { recursive: true, force: true });
});

/** Labels a new issue for the agent, through control plane `via`'s webhook endpoint. */
async function label(repo: string, title: string, via: number): Promise<number> {
  const issue = gh.createIssue(`acme/${repo}`, { title, body: title, user: 'alice' });
  const payload = examplePayload('issues', 'labeled', {
    repo: { id: gh.state.repos.get(`acme/${repo}`)!.id, fullName: `acme/${repo}` },
    sender: { login: 'alice', id: 101 },
    installationId,
  });
  payload.issue = { ...payload.issue, number: issue.number, title, pull_request: undefined };
  payload.label = { ...payload.label, name: 'airlock' };
  const answer = await gh.sendWebhook(`${controlUrls[via]}/api/github/webhooks`, 'issues', payload, {
    deliveryId: `cluster-${++deliveries}`,
  });
  expect(answer.status).toBe(200);
  return issue.number;
}

const leaseOwner = async (taskId: string) =>
  (await store.db.selectFrom('tasks').select('lease_owner').where('id', '=', taskId).executeTakeFirst())
    ?.lease_owner;

it("builds a repository's environment on the worker that runs its task, and the task restores it there", async () => {
  const issue = await label('tools', 'Use the environment', 1);
  const task = await waitFor(
    async () => {
      const found = (await tasks.list({ repoFullName: 'acme/tools' })).find((t) => t.issueNumber === issue);
      return found && isTerminal(found.state) ? found : undefined;
    },
    900_000,
    'the environment task to end',
  );
  expect(`${task.state} ${task.reason}`).toMatch(/^succeeded/);
  const events = async (subject: string) =>
    (
      await store.db
        .selectFrom('audit_events')
        .select(['type', 'data_json'])
        .where('task_id', '=', subject)
        .orderBy('seq')
        .execute()
    ).map((e) => ({ type: e.type, data: JSON.parse(e.data_json) as Record<string, unknown> }));
  const claimed = (await events(task.id)).find((e) => e.type === 'task.claimed')!.data.worker;
  const build = await store.db
    .selectFrom('environment_builds')
    .selectAll()
    .where('repo_full_name', '=', 'acme/tools')
    .executeTakeFirstOrThrow();
  // Built where the task ran, with a token the control plane minted into the build's chain.
  expect({ state: build.state, host: build.host }).toEqual({ state: 'succeeded', host: claimed });
  const built = await events(build.id);
  expect(built.find((e) => e.type === 'token.minted')?.data).toMatchObject({ for: 'worker' });
  const restored = (await events(task.id)).find((e) => e.type === 'environment.restore');
  expect(restored?.data).toMatchObject({ environment: build.environment_id, build: build.id });
  // Its agent fails (set -e) unless the build's setup output is in the restored workspace; it
  // copied it into the change it pushed.
  expect(task.result?.outcome).toBe('changes_pushed');
  expect(gh.state.pulls.filter((p) => p.head.ref === task.branch)).toHaveLength(1);
}, 1_200_000);

it('runs twenty tasks on two workers behind two control planes, through a worker killed mid-task', async () => {
  // A task that works for ten minutes, to kill its worker under.
  const slowIssue = await label('slow', 'Long work', 0);
  const slow = await waitFor(
    async () => (await tasks.list({ repoFullName: 'acme/slow' })).find((t) => t.issueNumber === slowIssue),
    30_000,
    'the slow task',
  );
  await waitFor(async () => (await tasks.get(slow.id)).state === 'running', 600_000, 'its agent to run');
  const victim = (await leaseOwner(slow.id))!;
  expect(workers.has(victim)).toBe(true);
  expect(processesNaming(slow.id).length).toBeGreaterThan(0);

  workers.get(victim)!.process.child.kill('SIGKILL');
  await workers.get(victim)!.process.exited;
  // Twenty issues, half through each control plane, while one worker is dead.
  const issues: number[] = [];
  for (let i = 0; i < TASKS; i++) issues.push(await label('widgets', `Greeting ${i + 1}`, i % 2));
  const failed = await waitFor(
    async () => {
      const now = await tasks.get(slow.id);
      return now.state === 'failed' ? now : undefined;
    },
    60_000,
    'a control plane or the other worker to recover the slow task',
  );
  expect(failed.reason).toMatch(/^interrupted: its worker stopped renewing the task’s lease/);
  // Its VM may run on (QEMU has a session of its own; it may also have stopped on losing its
  // parent's pipes) until the worker comes back, which reaps whatever is left.
  const back = workers.get(victim)!;
  // Restarted as npm start runs it (src/main.ts, AIRLOCK_ROLE=worker): the same worker.
  back.process = await startAirlockProcess(back.env, { cwd: dir, timeoutMs: 300_000 });
  await waitFor(() => processesNaming(slow.id).length === 0, 60_000, 'the orphaned VM reaped');

  const ended = await waitFor(
    async () => {
      const all = (await tasks.list({ repoFullName: 'acme/widgets', limit: 100 })).filter((t) =>
        issues.includes(t.issueNumber ?? -1),
      );
      return all.length === TASKS && all.every((t) => isTerminal(t.state)) ? all : undefined;
    },
    1_500_000,
    'every task to end',
  );
  // Each delivery became one task, and each task ended once, with its pull request.
  expect(new Set(ended.map((t) => t.issueNumber)).size).toBe(TASKS);
  expect(
    ended.map((t: Task) => `${t.issueNumber} ${t.state} ${t.reason}`).filter((t) => !t.includes('succeeded')),
  ).toEqual([]);
  for (const task of ended) {
    const prs = gh.state.pulls.filter((p) => p.head.ref === task.branch);
    expect(prs, task.branch).toHaveLength(1);
    const outcomes = await store.db
      .selectFrom('audit_events')
      .select(['type', 'data_json'])
      .where('task_id', '=', task.id)
      .where('type', 'in', ['task.outcome', 'git.ref_update'])
      .execute();
    expect(
      outcomes.filter((e) => e.type === 'task.outcome'),
      task.id,
    ).toHaveLength(1);
    // No branch was pushed twice: the proxy forwarded one update of it.
    expect(
      outcomes.filter((e) => e.type === 'git.ref_update' && JSON.parse(e.data_json).decision === 'forwarded'),
      task.id,
    ).toHaveLength(1);
    expect(processesNaming(task.id)).toEqual([]);
  }
  // Both workers ran some of them.
  const owners = await store.db
    .selectFrom('audit_events')
    .select('data_json')
    .where('type', '=', 'task.claimed')
    .execute();
  expect(new Set(owners.map((o) => JSON.parse(o.data_json).worker))).toEqual(new Set(workers.keys()));
  expect(await verifyAuditChains(store)).toMatchObject({ ok: true, problems: [] });

  // The App key: in each control plane's memory (the scan finds it where it is), in no worker's.
  const keyLine = gh.app.privateKey.split('\n').find((l) => l.length >= 60 && !l.startsWith('-----'))!;
  for (const control of controls) expect(processMemoryContains(control.child.pid!, keyLine)).toBe(true);
  for (const [name, worker] of workers)
    expect(processMemoryContains(worker.process.child.pid!, keyLine), `${name} holds the App key`).toBe(
      false,
    );

  for (const worker of workers.values()) {
    worker.process.child.kill('SIGTERM');
    expect(await worker.process.exited).toBe(0);
  }
}, 3_000_000);
