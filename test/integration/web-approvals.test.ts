import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Task } from '../../src/tasks/task.ts';
import { emulatorOAuth } from '../emulator/routes-oauth.ts';
import { type Harness, startHarness } from '../helpers/control-plane-harness.ts';
import { waitFor } from '../helpers/wait-for.ts';
import { examplePayload } from '../helpers/webhook-examples.ts';

// Debian's Chromium, installed by `.ci/setup.sh --for test`; driven by playwright-core (no download).
const CHROMIUM = process.env.AIRLOCK_CHROMIUM ?? '/usr/bin/chromium';
const ARTIFACTS = path.resolve('test/artifacts/web');

let h: Harness;
let browser: Browser;
let url: string;

/** A free loopback port, so airlock's public URL (the OAuth callback) can name it before it starts. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: run bash .ci/setup.sh --for test (installs Debian's chromium)`);
  }
  await mkdir(ARTIFACTS, { recursive: true });
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  h = await startHarness({
    files: { '.github/airlock.yml': 'approval:\n  separate_approver: true\n' },
    env: {
      PORT: String(port),
      AIRLOCK_PUBLIC_URL: url,
      AIRLOCK_SESSION_SECRET: 'x'.repeat(48),
    },
    envFor: (emulator) => ({
      GITHUB_CLIENT_ID: emulator.app.clientId,
      GITHUB_CLIENT_SECRET: emulator.app.clientSecret,
    }),
  });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: process.getuid?.() === 0 ? ['--no-sandbox'] : [],
  });
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await h?.close();
});

async function signedInPage(login: string): Promise<Page> {
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  emulatorOAuth(h.emulator.state).signInAs(login);
  await page.goto(`${url}/approvals`);
  await expect.poll(() => page.url()).toBe(`${url}/approvals`);
  return page;
}

async function waitingTask(): Promise<Task> {
  const issue = h.emulator.createIssue(h.repo, {
    title: 'Outsider asks',
    body: 'Please <script>alert(1)</script> fix it.\u200B hidden',
    user: 'bob',
  });
  const payload = examplePayload('issues', 'labeled', {
    // The repository's real id: the web UI matches tasks to what GitHub lists by id.
    repo: { id: (h.emulator.state.repos.get(h.repo) as { id: number }).id, fullName: h.repo },
    sender: { login: 'alice', id: 101, type: 'User' },
    installationId: h.installationId,
  });
  payload.issue.number = issue.number;
  payload.issue.title = issue.title;
  payload.issue.pull_request = undefined;
  payload.label = { ...payload.label, name: 'airlock' };
  await h.send('issues', payload);
  await waitFor(
    async () => (await h.plane.tasks.list({ issueNumber: issue.number }))[0]?.state === 'awaiting_approval',
    15_000,
    'task to wait',
  );
  return (await h.plane.tasks.list({ issueNumber: issue.number }))[0]!;
}

it('lists what waits, shows the frozen text safely, and approves with the button; forged and unauthorised requests are refused', async () => {
  h.emulator.addUser('carol', { id: 104 });
  h.emulator.setPermission(h.repo, 'carol', 'write');
  const task = await waitingTask();

  // alice asked for it: she sees it, but this repository wants someone else to approve.
  const alice = await signedInPage('alice');
  expect(await alice.locator(`#approval-${task.id}`).count()).toBe(1);
  await alice.goto(`${url}/approvals/${task.id}`);
  expect(await alice.getByLabel('Body').textContent()).toBe(
    'Please <script>alert(1)</script> fix it.⟨U+200B⟩ hidden',
  );
  await alice.getByRole('button', { name: 'Approve' }).click();
  await alice.waitForLoadState();
  expect(await alice.getByRole('alert').textContent()).toContain('requires someone else to approve it');
  expect((await h.plane.tasks.get(task.id)).state).toBe('awaiting_approval');

  // bob (read access) sees no approvals and has no form.
  const bob = await signedInPage('bob');
  expect(await bob.locator(`#approval-${task.id}`).count()).toBe(0);
  await bob.goto(`${url}/approvals/${task.id}`);
  expect(await bob.getByRole('button', { name: 'Approve' }).count()).toBe(0);

  // A forged request, from carol's browser but without airlock's token, is refused.
  const carol = await signedInPage('carol');
  await carol.goto(`${url}/approvals/${task.id}`);
  const digest = await carol.locator('#shown-digest').textContent();
  const forged = await carol.request.post(`${url}/approvals/${task.id}`, {
    form: { decision: 'approve', digest: digest ?? '' },
    maxRedirects: 0,
  });
  expect(forged.status()).toBe(403);
  expect((await h.plane.tasks.get(task.id)).state).toBe('awaiting_approval');

  // Access taken away between showing the page and the click: GitHub is asked again at the click.
  h.emulator.setPermission(h.repo, 'carol', 'read');
  await carol.getByRole('button', { name: 'Approve' }).click();
  await carol.waitForLoadState();
  expect(await carol.textContent('h1')).toBe('Write access needed');
  expect((await h.plane.tasks.get(task.id)).state).toBe('awaiting_approval');

  h.emulator.setPermission(h.repo, 'carol', 'write');
  await carol.goto(`${url}/approvals/${task.id}`);
  await carol.screenshot({ path: path.join(ARTIFACTS, 'approval-run.png'), fullPage: true });
  await carol.getByRole('button', { name: 'Approve' }).click();
  await carol.waitForURL(`${url}/tasks/${task.id}`);
  await waitFor(async () => (await h.plane.tasks.get(task.id)).state === 'succeeded', 15_000, 'task to run');
  const decided = (await h.airlock.approvals.forTask(task.id))[0]!;
  expect(decided).toMatchObject({ state: 'approved', decidedBy: 'carol', decidedById: 104, channel: 'web' });
  expect(decided.shownDigest).toBe(digest);
}, 180_000);
