import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { Task } from '../../src/tasks/task.ts';
import { emulatorOAuth } from '../emulator/routes-oauth.ts';
import { startWebWorld, type WebWorld } from '../helpers/web-world.ts';

// Debian's Chromium, installed by `.ci/setup.sh --for test`; driven by playwright-core (no download).
const CHROMIUM = process.env.AIRLOCK_CHROMIUM ?? '/usr/bin/chromium';
const ARTIFACTS = path.resolve('test-artifacts/web');

let w: WebWorld;
let browser: Browser;
let page: Page;
let done: Task;
let running: Task;
let vault: Task;

const shot = (name: string) => page.screenshot({ path: path.join(ARTIFACTS, `${name}.png`), fullPage: true });

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} is missing: run bash .ci/setup.sh --for test (installs Debian's chromium)`);
  }
  await mkdir(ARTIFACTS, { recursive: true });
  w = await startWebWorld({ live: { recheckMs: 1000, keepAliveMs: 500 } });
  done = w.addTask('acme/widgets', { actor: 'alice' });
  running = w.addTask('acme/widgets', { actor: 'bob', running: true });
  vault = w.addTask('acme/vault', { actor: 'alice' });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Chromium's sandbox cannot start as root (CI containers); the pages are our own.
    args: process.getuid?.() === 0 ? ['--no-sandbox'] : [],
  });
  page = await (
    await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 900 } })
  ).newPage();
});
afterAll(async () => {
  await browser?.close();
  await w?.close();
});

it('signs in with GitHub, lists, filters, opens a task, reads the timeline, follows it live, exports', async () => {
  // Sign in: airlock → the emulator's authorize endpoint → airlock's callback → the page asked for.
  emulatorOAuth(w.emulator.state).signInAs('bob');
  await page.goto(`${w.url}/tasks`);
  await expect.poll(() => page.url()).toBe(`${w.url}/tasks`);
  expect(await page.textContent('header')).toContain('Signed in as bob');
  expect(await page.getByRole('heading', { level: 1 }).textContent()).toBe('Tasks');
  const ids = await page.locator('tbody tr td:first-child code').allTextContents();
  expect(ids.sort()).toEqual([done.id, running.id].sort());
  expect(await page.locator('select[name=repo] option').allTextContents()).toEqual([
    'All repositories',
    'acme/widgets',
  ]);
  await shot('01-task-list');

  // Filter by state.
  await page.getByLabel('State').selectOption('running');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.waitForURL(/state=running/);
  expect(await page.locator('tbody tr td:first-child code').allTextContents()).toEqual([running.id]);
  await shot('02-filtered');

  // Open a finished task: facts, diff and timeline.
  await page.goto(`${w.url}/tasks`);
  await page.getByRole('link', { name: done.id }).click();
  await page.waitForURL(`${w.url}/tasks/${done.id}`);
  expect(await page.locator('#task-state').textContent()).toBe('succeeded');
  expect(await page.getByLabel('Patch').textContent()).toContain('+# new acme/widgets');
  const types = await page.locator('tbody td.type code').allTextContents();
  expect(types.slice(0, 2)).toEqual(['task.created', 'task.prompt']);
  expect(types).toContain('task.outcome');
  expect(await page.locator('tr.refused').count()).toBe(1);
  expect(await page.getByRole('link', { name: `Issue #${done.issueNumber}` }).getAttribute('href')).toBe(
    `${w.emulator.webUrl}/acme/widgets/issues/${done.issueNumber}`,
  );
  await page.locator('tr#e1 details summary').click();
  expect(await page.locator('tr#e1 details pre').textContent()).toContain('"login": "alice"');
  await shot('03-task-page');

  // Export: JSON Lines and JSON downloads hold this task's chain, in order.
  const [jsonl] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('link', { name: 'Export JSONL' }).click(),
  ]);
  expect(jsonl.suggestedFilename()).toBe(`airlock-task-${done.id}.jsonl`);
  const lines = (await readFile((await jsonl.path())!, 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  expect(lines.map((e: { seq: number }) => e.seq)).toEqual(lines.map((_: unknown, i: number) => i + 1));
  expect(lines.at(-1).hash).toBe(w.audit.headHash(done.id));
  const [json] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('link', { name: 'Export JSON', exact: true }).click(),
  ]);
  const record = JSON.parse(await readFile((await json.path())!, 'utf8'));
  expect(record).toMatchObject({ task: { id: done.id }, chain: { verified: true, events: lines.length } });

  // A running task's page follows new events live, until its outcome.
  await page.goto(`${w.url}/tasks/${running.id}`);
  expect(await page.locator('#live-status').textContent()).toContain('Running');
  const before = await page.locator('tbody tr').count();
  w.audit.append(running.id, 'vm.exec', { argv: ['npm', 'test'], uid: 1000 });
  await page.locator('tbody tr', { hasText: 'npm test (uid 1000)' }).waitFor();
  w.tasks.transition(running.id, 'succeeded');
  w.audit.append(running.id, 'task.outcome', { state: 'succeeded', reason: null });
  w.audit.append(running.id, 'task.state', { state: 'succeeded' });
  await expect.poll(() => page.locator('#task-state').textContent()).toBe('succeeded');
  await expect.poll(() => page.locator('#live-status').textContent()).toBe('Task finished.');
  expect(await page.locator('tbody tr').count()).toBe(before + 3);
  await shot('04-live-updates');

  // Another repository's task is not found; signing out ends the session.
  const hidden = await page.goto(`${w.url}/tasks/${vault.id}`);
  expect(hidden?.status()).toBe(404);
  expect(await page.getByRole('heading', { level: 1 }).textContent()).toBe('Task not found');
  await shot('05-other-repository');
  await page.goto(`${w.url}/tasks`);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(`${w.url}/signed-out`);
  const response = await page.request.get(`${w.url}/api/tasks`);
  expect(response.status()).toBe(401);
  await shot('06-signed-out');
});
