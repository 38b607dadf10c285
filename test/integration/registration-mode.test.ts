import { type ChildProcess, spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseEnv } from 'node:util';
import { chromium } from 'playwright-core';
import { afterEach, expect, it } from 'vitest';
import { loadAppConfig } from '../../src/config/app-config.ts';
import { SecretRedactor } from '../../src/secrets.ts';
import { startRegistrationServer } from '../../src/setup-mode.ts';
import { memoryLogger } from '../helpers/memory-logger.ts';
import { waitFor } from '../helpers/wait-for.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
const CHROMIUM = process.env.AIRLOCK_CHROMIUM ?? '/usr/bin/chromium';
const ARTIFACTS = path.resolve('test-artifacts/registration');
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

async function freePort(): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  server.close();
  return port;
}

function startMain(env: Record<string, string>): { child: ChildProcess; output: () => string } {
  const child = spawn(process.execPath, [path.join(root, 'src/main.ts')], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d) => {
    output += d;
  });
  child.stderr!.on('data', (d) => {
    output += d;
  });
  cleanups.push(async () => {
    child.kill('SIGKILL');
  });
  return { child, output: () => output };
}

/** The ports this machine listens on for TCP, with the addresses they are bound to. */
function listeningAddresses(port: number): string[] {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  return ['/proc/net/tcp', '/proc/net/tcp6'].flatMap((file) =>
    readFileSync(file, 'utf8')
      .split('\n')
      .slice(1)
      .map((line) => line.trim().split(/\s+/))
      .filter((f) => f[1]?.endsWith(`:${hexPort}`) && f[3] === '0A')
      .map((f) => f[1]!.split(':')[0]!),
  );
}

const unescapeHtml = (s: string) =>
  s
    .replaceAll('&quot;', '"')
    .replaceAll('&#39;', "'")
    .replaceAll('&lt;', '<')
    .replaceAll('&gt;', '>')
    .replaceAll('&amp;', '&');

it('npm start with no credentials serves registration on loopback only, opened by a one-time code, in readable logs', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'airlock-reg-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  const port = await freePort();
  const publicUrl = 'https://airlock.acme.test';
  const { output } = startMain({
    PORT: String(port),
    AIRLOCK_DATA_DIR: dir,
    AIRLOCK_PUBLIC_URL: publicUrl,
    LOG_FORMAT: 'pretty',
  });
  const printed = await waitFor(
    () => /open this address.* url=(http:\/\/localhost:\d+\/\?code=([\w-]+))/.exec(output()),
    20_000,
    'the registration address on the console',
  );
  const code = printed[2]!;
  // Loopback only: 127.0.0.1 (0100007F in /proc/net/tcp), not every interface.
  expect(listeningAddresses(port)).toEqual(['0100007F']);
  // The same format as every other line, no JSON, no Probot banner.
  const lines = output().trim().split('\n');
  for (const line of lines) expect(line).toMatch(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} (INFO|WARN) /);
  expect(output()).not.toContain('Probot');

  const base = `http://127.0.0.1:${port}`;
  const locked = await fetch(`${base}/`);
  expect(locked.status).toBe(403);
  const lockedPage = await locked.text();
  expect(lockedPage).toContain('one-time code');
  expect(lockedPage).not.toContain('manifest');
  expect((await fetch(`${base}/?code=not-the-code`, { redirect: 'manual' })).status).toBe(403);

  // The operator opens the printed address in a browser, and looks at the page.
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run bash .ci/setup.sh --for test`);
  await mkdir(ARTIFACTS, { recursive: true });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: process.getuid?.() === 0 ? ['--no-sandbox'] : [],
  });
  let cookie: string;
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const tab = await context.newPage();
    await tab.goto(printed[1]!.replace('localhost', '127.0.0.1'));
    expect(new URL(tab.url()).search).toBe('');
    expect(await tab.getByRole('button', { name: /Create the GitHub App/ }).isVisible()).toBe(true);
    await tab.screenshot({ path: path.join(ARTIFACTS, 'registration.png'), fullPage: true });
    const [unlocked] = await context.cookies();
    cookie = `${unlocked!.name}=${unlocked!.value}`;
  } finally {
    await browser.close();
  }
  // One time: the code does not open a second browser.
  expect((await fetch(`${base}/?code=${code}`, { redirect: 'manual' })).status).toBe(403);

  const page = await (await fetch(`${base}/`, { headers: { cookie } })).text();
  expect(page).toContain('Register airlock as a GitHub App');
  expect(page).toContain('contents: write');
  expect(page).toContain('the airlock label on an issue starts a task');
  const action = unescapeHtml(/<form method="post" action="([^"]+)"/.exec(page)![1]!);
  expect(action).toMatch(/^https:\/\/github\.com\/settings\/apps\/new\?state=[\w-]{20,}$/);
  const manifest = JSON.parse(unescapeHtml(/name="manifest" value="([^"]*)"/.exec(page)![1]!));
  expect(manifest).toMatchObject({
    name: 'airlock',
    public: false,
    hook_attributes: { url: `${publicUrl}/api/github/webhooks`, active: true },
    callback_urls: [`${publicUrl}/auth/github/callback`],
    setup_url: `${publicUrl}/tasks`,
    redirect_url: `${base}/setup/done`,
    request_oauth_on_install: false,
    default_permissions: {
      contents: 'write',
      issues: 'write',
      pull_requests: 'write',
      checks: 'write',
      actions: 'read',
      metadata: 'read',
    },
  });
  expect(manifest.default_events).toContain('workflow_run');
  expect(JSON.stringify(manifest)).not.toContain('AIRLOCK_PUBLIC_URL');
});

it('the return from GitHub writes every credential sign-in needs to .env, once the code is given', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'airlock-reg-done-'));
  cleanups.push(() => rm(dir, { recursive: true, force: true }));
  // GitHub's manifest conversion endpoint, answering as GitHub does for one code.
  const pem = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({
    type: 'pkcs1',
    format: 'pem',
  }) as string;
  const conversions: string[] = [];
  const github = createHttpServer((req, res) => {
    conversions.push(`${req.method} ${req.url}`);
    if (req.url !== '/app-manifests/the-code/conversions') return void res.writeHead(404).end('{}');
    res.writeHead(201, { 'content-type': 'application/json' }).end(
      JSON.stringify({
        id: 4242,
        slug: 'airlock-acme',
        name: 'airlock-acme',
        html_url: 'https://github.com/apps/airlock-acme',
        client_id: 'Iv23liAirlockClient',
        client_secret: 'client-secret-from-github-0123456789',
        webhook_secret: 'webhook-secret-from-github',
        pem,
      }),
    );
  }).listen(0, '127.0.0.1');
  await once(github, 'listening');
  cleanups.push(async () => void github.close());
  const apiUrl = `http://127.0.0.1:${(github.address() as { port: number }).port}`;
  const envFile = path.join(dir, '.env');
  const { log, lines } = memoryLogger(new SecretRedactor());
  const config = loadAppConfig({
    PORT: '0',
    GITHUB_API_URL: apiUrl,
    AIRLOCK_PUBLIC_URL: 'http://localhost:3000',
  });
  const server = await startRegistrationServer(config, { log, envFile });
  cleanups.push(server.stop);
  expect(server.origin).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  const code = JSON.parse(lines.find((l) => l.includes('open this address'))!).code as string;

  // Without the code nothing past the code page answers, not even GitHub's return.
  expect((await fetch(`${server.origin}/setup/done?code=the-code&state=x`)).status).toBe(403);
  const unlocked = await fetch(`${server.origin}/unlock`, {
    method: 'POST',
    body: new URLSearchParams({ code }),
    redirect: 'manual',
  });
  expect(unlocked.status).toBe(303);
  const cookie = unlocked.headers.getSetCookie()[0]!.split(';')[0]!;
  const page = await (await fetch(`${server.origin}/`, { headers: { cookie } })).text();
  const state = /\?state=([\w-]+)"/.exec(page)![1]!;
  const forged = await fetch(`${server.origin}/setup/done?code=the-code&state=forged`, {
    headers: { cookie },
  });
  expect(forged.status).toBe(400);
  expect(conversions).toEqual([]);

  const done = await fetch(`${server.origin}/setup/done?code=the-code&state=${state}`, {
    headers: { cookie },
  });
  expect(done.status).toBe(200);
  expect(await done.text()).toContain('https://github.com/apps/airlock-acme/installations/new');
  expect(conversions).toEqual(['POST /app-manifests/the-code/conversions']);

  // What airlock reads at its next start: the app, and sign-in configured, with no manual step.
  const env = parseEnv(readFileSync(envFile, 'utf8')) as Record<string, string>;
  const next = loadAppConfig(env);
  expect(next.github).toMatchObject({
    appId: 4242,
    webhookSecret: 'webhook-secret-from-github',
    clientId: 'Iv23liAirlockClient',
    clientSecret: 'client-secret-from-github-0123456789',
    apiUrl,
  });
  expect(next.github!.privateKey.trim()).toBe(pem.trim());
  expect(next.web.sessionSecret).toMatch(/^[0-9a-f]{64}$/);
  expect(lines.join('\n')).not.toContain('client-secret-from-github');
});

it('refuses invalid settings with a message that names the variable', async () => {
  const { child, output } = startMain({ APP_ID: 'twelve', PORT: '1' });
  const [code] = await once(child, 'exit');
  expect(code).toBe(1);
  expect(output()).toMatch(/APP_ID/);
  expect(output()).toMatch(/PRIVATE_KEY/);
});
