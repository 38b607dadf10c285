import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type GitHubEmulator, startGitHubEmulator } from '../emulator/index.ts';
import { type AirlockProcess, freePort, startAirlockProcess } from '../helpers/airlock-process.ts';
import { testVmImage } from '../helpers/vm-image.ts';
import { waitFor } from '../helpers/wait-for.ts';
import { examplePayload } from '../helpers/webhook-examples.ts';

// The product as `npm start` runs it (src/main.ts, settings from the environment, its own
// process), pointed at the GitHub emulator: health, metrics, a labelled issue through a microVM to
// a draft PR that links the audit record, the record over the admin API, and a clean stop.
const ADMIN = 'admin-token-for-the-start-test';
let gh: GitHubEmulator;
let dir: string;
let app: AirlockProcess;
let base: string;

beforeAll(async () => {
  const image = testVmImage();
  gh = await startGitHubEmulator({ appSlug: 'airlock-start' });
  await gh.createRepo('acme', 'widgets', {
    files: {
      'greeting.txt': 'Hello\n',
      'scripts/agent.sh': '#!/bin/bash\necho "Hello there" > greeting.txt\necho "greeted"\n',
      '.github/airlock.yml':
        'agent: script\nscript: scripts/agent.sh\nlimits:\n  cpus: 1\n  memory_mib: 512\n  disk_mib: 512\n',
    },
  });
  gh.addUser('alice', { id: 101 });
  gh.setPermission('acme/widgets', 'alice', 'write');
  dir = await mkdtemp(path.join(tmpdir(), 'airlock-start-'));
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  app = await startAirlockProcess(
    {
      HOST: '127.0.0.1',
      PORT: String(port),
      APP_ID: String(gh.app.id),
      PRIVATE_KEY: gh.app.privateKey,
      WEBHOOK_SECRET: gh.app.webhookSecret,
      GITHUB_API_URL: gh.apiUrl,
      GITHUB_WEB_URL: gh.url,
      AIRLOCK_PUBLIC_URL: base,
      AIRLOCK_DATA_DIR: path.join(dir, 'data'),
      AIRLOCK_CACHE_DIR: path.dirname(path.dirname(image.dir)),
      AIRLOCK_ACCEL: 'tcg',
      AIRLOCK_ADMIN_TOKEN: ADMIN,
      LOG_LEVEL: 'info',
    },
    { cwd: dir }, // no .env here
  );
}, 180_000);

afterAll(async () => {
  if (app && app.child.exitCode === null) app.child.kill('SIGKILL');
  await gh?.close();
  await rm(dir, { recursive: true, force: true });
});

it('runs as npm start runs it: serves health and metrics, turns a labelled issue into a PR, and stops cleanly', async () => {
  const health = await (await fetch(`${base}/healthz`)).json();
  expect(health).toMatchObject({ ok: true, accel: 'tcg' });
  const metrics = await fetch(`${base}/metrics`);
  expect(metrics.status).toBe(200);
  expect(await metrics.text()).toMatch(/^# HELP airlock_/m);

  const issue = gh.createIssue('acme/widgets', {
    title: 'Warmer greeting',
    body: 'Say hello there.',
    user: 'alice',
  });
  const payload = examplePayload('issues', 'labeled', {
    repo: { id: 1, fullName: 'acme/widgets' },
    sender: { login: 'alice', id: 101 },
    installationId: gh.installApp('acme'),
  });
  payload.issue = { ...payload.issue, number: issue.number, title: issue.title, pull_request: undefined };
  payload.label = { ...payload.label, name: 'airlock' };
  const answer = await gh.sendWebhook(`${base}/api/github/webhooks`, 'issues', payload, {
    deliveryId: 'start-1',
  });
  expect(answer.status).toBe(200);

  const api = (url: string) => fetch(`${base}${url}`, { headers: { authorization: `Bearer ${ADMIN}` } });
  const task = await waitFor(
    async () => {
      const { tasks } = (await (await api('/api/tasks')).json()) as {
        tasks: Array<{ id: string; state: string; reason: string | null; branch: string }>;
      };
      return tasks.find((t) => ['succeeded', 'failed'].includes(t.state));
    },
    600_000,
    'the task to finish',
  );
  // A succeeded task's reason is its outcome.
  expect(task.reason ?? '').toMatch(/^changes pushed/);
  expect(task.state).toBe('succeeded');
  const pr = await waitFor(() => gh.state.pulls.find((p) => p.head.ref === task.branch), 30_000, 'the PR');
  expect(pr.draft).toBe(true);
  expect(pr.body).toContain(`${base}/tasks/${task.id}`);
  const verify = (await (await api(`/api/tasks/${task.id}/verify`)).json()) as { ok: boolean };
  expect(verify.ok).toBe(true);
  // The pages need a sign-in; without one they do not show the record.
  expect((await fetch(`${base}/tasks/${task.id}`, { redirect: 'manual' })).status).not.toBe(200);

  app.child.kill('SIGTERM');
  expect(await app.exited).toBe(0);
}, 900_000);
