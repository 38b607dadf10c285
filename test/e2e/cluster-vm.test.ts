import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.ts';
import { openStore, type Store } from '../../src/store/database.ts';
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

// airlock split as it is deployed on several hosts (issue 16), each role in its own process as
// src/main.ts runs it: a control plane holding the GitHub App key, and a worker running real
// microVMs, on one PostgreSQL database. A labelled issue becomes a pull request through the
// worker; the worker's memory never holds the App key; a worker killed mid-task has its task
// recovered by the control plane, and its VM reaped when it comes back.
const CONFIG =
  'agent: script\nscript: scripts/agent.sh\nlimits:\n  cpus: 1\n  memory_mib: 512\n  disk_mib: 512\n';
let gh: GitHubEmulator;
let dir: string;
let control: AirlockProcess;
let worker: AirlockProcess | undefined;
let store: Store;
let tasks: TaskStore;
let controlBase: string;
let workerEnv: Record<string, string>;
let installationId: number;

beforeAll(async () => {
  const image = testVmImage();
  gh = await startGitHubEmulator({ appSlug: 'airlock-cluster' });
  for (const [name, agent] of [
    ['widgets', '#!/bin/bash\necho "Hello there" > greeting.txt\necho "greeted"\n'],
    // Works long enough to be killed under.
    ['slow', '#!/bin/bash\necho "working"\nsleep 600\n'],
  ] as const)
    await gh.createRepo('acme', name, {
      files: { 'greeting.txt': 'Hello\n', 'scripts/agent.sh': agent, '.github/airlock.yml': CONFIG },
    });
  gh.addUser('alice', { id: 101 });
  gh.setPermission('acme/widgets', 'alice', 'write');
  gh.setPermission('acme/slow', 'alice', 'write');
  installationId = gh.installApp('acme');
  dir = await mkdtemp(path.join(tmpdir(), 'airlock-cluster-vm-'));
  const databaseUrl = await createTestDatabase();
  store = await openStore({ url: databaseUrl });
  tasks = new TaskStore(store, systemClock);
  const [port, internalPort] = [await freePort(), await freePort()];
  controlBase = `http://127.0.0.1:${port}`;
  const common = {
    DATABASE_URL: databaseUrl,
    AIRLOCK_WORKER_SECRET: WORKER_SECRET,
    AIRLOCK_LEASE_SECONDS: '5',
    AIRLOCK_PUBLIC_URL: controlBase,
    LOG_LEVEL: 'info',
  };
  control = await startAirlockProcess(
    {
      ...common,
      AIRLOCK_ROLE: 'control',
      HOST: '127.0.0.1',
      PORT: String(port),
      AIRLOCK_INTERNAL_PORT: String(internalPort),
      APP_ID: String(gh.app.id),
      PRIVATE_KEY: gh.app.privateKey,
      WEBHOOK_SECRET: gh.app.webhookSecret,
      GITHUB_API_URL: gh.apiUrl,
      GITHUB_WEB_URL: gh.url,
      AIRLOCK_DATA_DIR: path.join(dir, 'control'),
    },
    { cwd: dir },
  );
  workerEnv = {
    ...common,
    AIRLOCK_ROLE: 'worker',
    AIRLOCK_CONTROL_URL: `http://127.0.0.1:${internalPort}`,
    AIRLOCK_WORKER_NAME: 'vm-host-1',
    AIRLOCK_DATA_DIR: path.join(dir, 'worker'),
    AIRLOCK_CACHE_DIR: path.dirname(path.dirname(image.dir)),
    AIRLOCK_ACCEL: 'tcg',
    AIRLOCK_MAX_CONCURRENT_TASKS: '1',
  };
  worker = await startAirlockProcess(workerEnv, { cwd: dir, timeoutMs: 300_000 });
}, 600_000);

afterAll(async () => {
  for (const p of [worker, control]) if (p && p.child.exitCode === null) p.child.kill('SIGKILL');
  await store?.close();
  await gh?.close();
  await rm(dir, { recursive: true, force: true });
});

async function label(repo: string, title: string, deliveryId: string): Promise<number> {
  const issue = gh.createIssue(`acme/${repo}`, { title, body: title, user: 'alice' });
  const payload = examplePayload('issues', 'labeled', {
    repo: { id: repo === 'widgets' ? 1 : 2, fullName: `acme/${repo}` },
    sender: { login: 'alice', id: 101 },
    installationId,
  });
  payload.issue = { ...payload.issue, number: issue.number, title, pull_request: undefined };
  payload.label = { ...payload.label, name: 'airlock' };
  const answer = await gh.sendWebhook(`${controlBase}/api/github/webhooks`, 'issues', payload, {
    deliveryId,
  });
  expect(answer.status).toBe(200);
  return issue.number;
}

const taskOf = (repo: string, issue: number) =>
  waitFor(
    async () => (await tasks.list({ repoFullName: `acme/${repo}` })).find((t) => t.issueNumber === issue),
    30_000,
    `the task of ${repo}#${issue}`,
  );

it('runs a task on the worker through a microVM, with the App key only in the control plane', async () => {
  const issue = await label('widgets', 'Warmer greeting', 'cluster-1');
  const { id } = await taskOf('widgets', issue);
  const task = await waitFor(
    async () => {
      const now = await tasks.get(id);
      return ['succeeded', 'failed'].includes(now.state) ? now : undefined;
    },
    600_000,
    'the task to finish',
  );
  expect(task.reason ?? '').toMatch(/^changes pushed/);
  const pr = await waitFor(() => gh.state.pulls.find((p) => p.head.ref === task.branch), 30_000, 'the PR');
  expect(pr.draft).toBe(true);
  // The key as V8 would hold it: a line of the PEM body, long enough to be only the key's.
  const keyLine = gh.app.privateKey.split('\n').find((l) => l.length >= 60 && !l.startsWith('-----'))!;
  expect(processMemoryContains(control.child.pid!, keyLine), 'the scan finds the key where it is').toBe(true);
  expect(processMemoryContains(worker!.child.pid!, keyLine), 'the worker holds the App key').toBe(false);
}, 900_000);

it('recovers the task of a worker killed mid-task, and the worker reaps its VM when it comes back', async () => {
  const issue = await label('slow', 'Long work', 'cluster-2');
  const { id } = await taskOf('slow', issue);
  await waitFor(async () => (await tasks.get(id)).state === 'running', 600_000, 'the agent to run');
  expect(processesNaming(id).length).toBeGreaterThan(0);
  worker!.child.kill('SIGKILL');
  await worker!.exited;
  const failed = await waitFor(
    async () => {
      const now = await tasks.get(id);
      return now.state === 'failed' ? now : undefined;
    },
    60_000,
    'the control plane to recover the task',
  );
  expect(failed.reason).toMatch(/^interrupted: its worker stopped renewing the task’s lease/);
  // Its VM runs on (QEMU has a session of its own) until the worker comes back.
  expect(processesNaming(id).length).toBeGreaterThan(0);
  // Back under its name: what its previous run left on this host goes.
  worker = await startAirlockProcess(workerEnv, { cwd: dir, timeoutMs: 300_000 });
  await waitFor(() => processesNaming(id).length === 0, 60_000, 'the orphaned VM reaped');
  worker.child.kill('SIGTERM');
  expect(await worker.exited).toBe(0);
}, 900_000);
