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
// Screenshots for a person to look at after a run (git-ignored).
const ARTIFACTS = path.resolve('test/artifacts/web');

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
  done = await w.addTask('acme/widgets', { actor: 'alice' });
  running = await w.addTask('acme/widgets', { actor: 'bob', running: true });
  vault = await w.addTask('acme/vault', { actor: 'alice' });
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
  const ids = await page.locator('tbody tr td:first-child .sub code').allTextContents();
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
  expect(await page.locator('tbody tr td:first-child .sub code').allTextContents()).toEqual([running.id]);
  await shot('02-filtered');

  // Open a finished task: facts, diff, then its audit timeline.
  await page.goto(`${w.url}/tasks`);
  await page.locator('tbody tr', { hasText: done.id }).getByRole('link', { name: 'Make it better' }).click();
  await page.waitForURL(`${w.url}/tasks/${done.id}`);
  expect(await page.locator('#task-state').textContent()).toBe('succeeded');
  expect(await page.getByLabel('Patch').textContent()).toContain('+# new acme/widgets');
  await page.getByRole('link', { name: 'Audit timeline' }).click();
  await page.waitForURL(`${w.url}/tasks/${done.id}/timeline`);
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
  expect(lines.at(-1).hash).toBe(await w.audit.headHash(done.id));
  const [json] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('link', { name: 'Export JSON', exact: true }).click(),
  ]);
  const record = JSON.parse(await readFile((await json.path())!, 'utf8'));
  expect(record).toMatchObject({ task: { id: done.id }, chain: { verified: true, events: lines.length } });

  // A running task's timeline follows new events live, until its outcome.
  await page.goto(`${w.url}/tasks/${running.id}/timeline`);
  expect(await page.locator('#live-status').textContent()).toContain('Running');
  const before = await page.locator('tbody tr').count();
  w.audit.append(running.id, 'vm.exec', { argv: ['npm', 'test'], uid: 1000 });
  await page.locator('tbody tr', { hasText: 'npm test (uid 1000)' }).waitFor();
  await w.tasks.transition(running.id, 'succeeded');
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

/** Signs bob in again (the first test signs out at its end) and opens a page. */
async function openAsBob(pathname: string): Promise<void> {
  emulatorOAuth(w.emulator.state).signInAs('bob');
  await page.goto(`${w.url}${pathname}`);
  await page.waitForURL(`${w.url}${pathname}`);
}

const noPageScroll = () =>
  page.evaluate<boolean>('document.documentElement.scrollWidth <= document.documentElement.clientWidth');

it('shows the verified badge on a clean task and the broken one, linked to the event, on a tampered task', async () => {
  const clean = await w.addAgentRun('acme/widgets', {
    agent: 'claude',
    fixture: 'claude-edit-run',
    title: 'Clean',
  });
  const bad = await w.addAgentRun('acme/widgets', {
    agent: 'claude',
    fixture: 'claude-edit-run',
    title: 'Tampered',
  });
  await w.audit.flush(); // what airlock has committed is what someone with the database file can change
  w.db.exec('DROP TRIGGER IF EXISTS audit_events_append_only_update');
  w.db
    .prepare(`UPDATE audit_events SET ts = '2020-01-01T00:00:00.000Z' WHERE task_id = ? AND seq = 7`)
    .run(bad.id);
  await openAsBob('/tasks');
  const badge = (id: string) => page.locator('tbody tr', { hasText: id }).locator('.verdict');
  expect(await badge(clean.id).getAttribute('data-verdict')).toBe('verified');
  expect(await badge(bad.id).getAttribute('data-verdict')).toBe('broken');
  await page.goto(`${w.url}/tasks/${clean.id}`);
  expect(await page.locator('#task-header .badge-ok').textContent()).toBe('✓ verified');
  await page.goto(`${w.url}/tasks/${bad.id}`);
  expect(await page.getByRole('alert').textContent()).toContain(
    'event 7 (vm.exec) was changed after it was written',
  );
  await page.locator('#task-header').screenshot({ path: path.join(ARTIFACTS, 'docs-broken-badge.png') });
  await page.locator('#task-header .badge-bad').click();
  await page.waitForURL(/\/timeline\?after=6#e7$/);
  expect(await page.locator('tr#e7').getAttribute('class')).toBe('broken');
  expect(await page.locator('tr#e7').isVisible()).toBe(true);
  // What the badge means is one click away.
  await page.goto(`${w.url}/tasks/${clean.id}`);
  await page.locator('#task-header .badge-ok').click();
  await page.waitForURL(`${w.url}/verified`);
  expect(await page.getByRole('heading', { level: 1 }).textContent()).toBe('What “verified” means');
});

it('shows the steps of real Claude Code, Codex and script runs', async () => {
  const claude = await w.addAgentRun('acme/widgets', {
    agent: 'claude',
    fixture: 'claude-edit-run',
    title: 'Write a note',
    summary: 'Wrote `notes.txt`; the check **exited 3** as expected.',
  });
  const codex = await w.addAgentRun('acme/widgets', {
    agent: 'codex',
    fixture: 'codex-edit-run',
    title: 'Codex edit',
  });
  const script = await w.addAgentRun('acme/widgets', {
    agent: 'script',
    script: ['editing a.txt', 'done'],
    title: 'Scripted',
  });
  await openAsBob(`/tasks/${claude.id}`);
  expect(await page.getByRole('heading', { level: 1 }).textContent()).toBe('Write a note');
  expect(await page.locator('#task-outcome .md').innerHTML()).toContain('<code>notes.txt</code>');
  const bash = page.locator('li.item', { has: page.locator('.chip', { hasText: /^Bash$/ }) });
  expect(await bash.locator('code.cmd').textContent()).toBe('cat notes.txt && exit 3');
  expect(await bash.locator('.exit').textContent()).toBe('exit 3');
  expect(await bash.locator('pre').isVisible()).toBe(false);
  await bash.locator('summary').click();
  expect(await bash.locator('pre').textContent()).toContain('scripted note');
  const edit = page.locator('li.item', { has: page.locator('.chip', { hasText: /^Edit$/ }) });
  await edit.getByRole('link', { name: 'a.txt' }).click();
  await page.waitForURL(/#diff-a\.txt$/);
  expect(
    await page.locator('h3', { hasText: 'Boot the VM and mint the token' }).locator('..').textContent(),
  ).toMatch(/\d+(\.\d)? s/);
  await shot('10-steps-claude');
  // The pictures docs/audit.md shows (copied to docs/images/ by hand when the pages change).
  await page.locator('li.step-agent').screenshot({ path: path.join(ARTIFACTS, 'docs-steps-view.png') });

  await page.goto(`${w.url}/tasks/${codex.id}`);
  const shell = page.locator('li.item', { has: page.locator('.chip', { hasText: /^shell$/ }) });
  expect(await shell.locator('code.cmd').textContent()).toBe("/bin/bash -lc 'cat a.txt && echo ok'");
  expect(await shell.locator('.exit').textContent()).toBe('exit 0');
  await shot('11-steps-codex');

  await page.goto(`${w.url}/tasks/${script.id}`);
  expect(await page.locator('li.item .md').allTextContents()).toEqual(['editing a.txt', 'done']);
  await shot('12-steps-script');
});

it('updates the header, the diff and the outcome live', async () => {
  const task = await w.addAgentRun('acme/widgets', {
    agent: 'script',
    script: ['working'],
    title: 'Live one',
    running: true,
  });
  await openAsBob(`/tasks/${task.id}`);
  expect(await page.locator('#live-status').textContent()).toContain('Running');
  expect(await page.locator('#task-diff').textContent()).toContain('No diff yet');
  w.audit.append(task.id, 'agent.exit', { code: 0, signal: null, durationMs: 900, events: 1 });
  w.audit.append(task.id, 'git.diff', {
    base: 'a'.repeat(40),
    head: 'c'.repeat(40),
    stat: ' live.txt | 1 +\n',
    patch: 'diff --git a/live.txt b/live.txt\n--- a/live.txt\n+++ b/live.txt\n@@ -0,0 +1 @@\n+live change\n',
  });
  await page.locator('#task-diff', { hasText: '+live change' }).waitFor();
  await w.tasks.transition(task.id, 'pushing');
  w.audit.append(task.id, 'task.state', { state: 'pushing', reason: null });
  await page.locator('#task-header .phase', { hasText: 'pushing for' }).waitFor();
  await w.tasks.transition(task.id, 'succeeded');
  await w.tasks.update(task.id, {
    result: { outcome: 'changes_pushed', summary: 'Added **live.txt**.', prNumber: 77 },
  });
  w.audit.append(task.id, 'task.outcome', { state: 'succeeded', reason: null });
  w.audit.append(task.id, 'task.state', { state: 'succeeded', reason: null });
  await page.locator('#task-outcome', { hasText: 'Changes pushed (pull request #77)' }).waitFor();
  expect(await page.locator('#task-outcome strong').allTextContents()).toContain('live.txt');
  expect(await page.locator('#task-state').textContent()).toBe('succeeded');
  expect(await page.locator('#task-header dl').textContent()).toContain('Finished');
  expect(await page.getByRole('link', { name: 'Pull request #77' }).count()).toBe(1);
  await expect.poll(() => page.locator('#live-status').textContent()).toBe('Task finished.');
});

it('jumps to the refusals of a long, hostile record', async () => {
  const task = await w.addTask('acme/widgets', { running: true });
  for (let i = 0; i < 700; i++)
    w.audit.append(task.id, 'vm.exec', { argv: ['curl', `http://10.0.0.${i % 250}`] });
  w.audit.append(task.id, 'proxy.egress', {
    method: 'CONNECT',
    host: 'exfil.example',
    port: 443,
    decision: 'refused',
  });
  await openAsBob(`/tasks/${task.id}/timeline`);
  await page.getByRole('link', { name: 'Jump to the first refusal' }).click();
  await page.waitForURL(/#e3$/); // the world's own refused CONNECT comes first
  expect(await page.locator('tr#e3').getAttribute('class')).toBe('refused');
  await page.getByRole('link', { name: /^Only refusals/ }).click();
  await page.waitForURL(/only=refusals/);
  expect(await page.locator('tbody tr').count()).toBe(2);
  expect(await page.locator('tbody tr').last().textContent()).toContain('exfil.example');
  expect(await page.locator('tbody tr.refused').count()).toBe(2);
});

it('fits a 390 px screen without page-level horizontal scroll (list, steps, timeline); screenshots', async () => {
  const task = await w.addAgentRun('acme/widgets', {
    agent: 'claude',
    fixture: 'claude-edit-run',
    title: 'A rather long issue title that has to wrap on a phone screen without pushing the page sideways',
    summary: 'Wrote `notes.txt`.\n\n- checked with `cat notes.txt && exit 3`\n- left the rest alone',
  });
  await openAsBob('/tasks');
  await shot('20-list-desktop');
  await page.goto(`${w.url}/tasks/${task.id}`);
  await shot('21-task-desktop');
  await page.setViewportSize({ width: 390, height: 844 });
  for (const [name, pathname] of [
    ['22-list-phone', '/tasks'],
    ['23-task-phone', `/tasks/${task.id}`],
    ['24-timeline-phone', `/tasks/${task.id}/timeline`],
  ] as const) {
    await page.goto(`${w.url}${pathname}`);
    expect(await noPageScroll(), pathname).toBe(true);
    await shot(name);
  }
  await page.setViewportSize({ width: 1280, height: 900 });
});
