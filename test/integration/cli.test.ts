import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/audit-log.ts';
import { systemClock } from '../../src/clock.ts';
import { SecretRedactor } from '../../src/secrets.ts';
import { openStore } from '../../src/store/database.ts';
import { tamper } from '../helpers/audit-tamper.ts';

const cli = fileURLToPath(new URL('../../src/cli.ts', import.meta.url));
let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'airlock-cli-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const airlock = (...args: string[]) =>
  spawnSync(process.execPath, [cli, ...args], {
    env: { PATH: process.env.PATH, AIRLOCK_DATA_DIR: dir },
    encoding: 'utf8',
  });

it('airlock audit verify says which event of which task was changed', async () => {
  const store = await openStore({ file: path.join(dir, 'airlock.sqlite') });
  const audit = new AuditLog(store, systemClock, new SecretRedactor());
  for (let i = 0; i < 3; i++) audit.append('t1', 'step', { i });
  await audit.flush();
  expect(airlock('audit', 'verify').stdout).toMatch(/^ok: 1 task\(s\), 3 event\(s\)/m);
  await tamper(store, `UPDATE audit_events SET data_json = '{"i":9}' WHERE task_id = 't1' AND seq = 2`);
  await store.close();
  const result = airlock('audit', 'verify', 't1');
  expect(result.status).toBe(1);
  expect(result.stdout).toContain('task t1: event 2 (step) was changed after it was written');
});

it('airlock config check names the bad field; unknown commands print usage', () => {
  const file = fileURLToPath(new URL('../../package.json', import.meta.url));
  const bad = airlock('config', 'check', file);
  expect(bad.status).toBe(1);
  expect(bad.stderr).toContain(`${file} is not a valid .github/airlock.yml`);
  expect(bad.stderr).toContain(`Unrecognized keys: "name"`);
  const unknown = airlock('frobnicate');
  expect(unknown.status).toBe(2);
  expect(unknown.stderr).toContain('usage: airlock');
});
