import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, expect, it } from 'vitest';
import { waitFor } from '../helpers/wait-for.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));
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

it('serves the manifest registration flow from app.yml when there are no app credentials', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'airlock-reg-'));
  const port = await freePort();
  const child = spawn(process.execPath, [path.join(root, 'src/main.ts')], {
    cwd: root,
    env: {
      PATH: process.env.PATH ?? '',
      PORT: String(port),
      HOST: '127.0.0.1',
      AIRLOCK_DATA_DIR: dir,
      AIRLOCK_PUBLIC_URL: `http://127.0.0.1:${port}`,
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  cleanups.push(async () => {
    child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });
  const page = await waitFor(
    () =>
      fetch(`http://127.0.0.1:${port}/probot`)
        .then((r) => (r.ok ? r.text() : undefined))
        .catch(() => undefined),
    20_000,
    'the registration page',
  );
  expect(page).toContain('Register GitHub App');
  // The manifest posted to GitHub carries app.yml's permissions and events.
  const manifest = JSON.parse(page.match(/name="manifest"[^>]*value='([^']*)'/)![1]!);
  expect(manifest.default_permissions).toEqual({
    contents: 'write',
    issues: 'write',
    pull_requests: 'write',
    checks: 'write',
    actions: 'read',
    metadata: 'read',
  });
  expect(manifest.default_events).toContain('workflow_run');
  expect(manifest.hook_attributes.url).toBe(`http://127.0.0.1:${port}/api/github/webhooks`);
});

it('refuses invalid settings with a message that names the variable', async () => {
  const child = spawn(process.execPath, [path.join(root, 'src/main.ts')], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', APP_ID: 'twelve', PORT: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const [code] = await once(child, 'exit');
  expect(code).toBe(1);
  expect(stderr).toMatch(/APP_ID/);
  expect(stderr).toMatch(/PRIVATE_KEY/);
});
