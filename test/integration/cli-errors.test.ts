import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/audit-log.ts';
import { systemClock } from '../../src/clock.ts';
import { SecretRedactor } from '../../src/secrets.ts';
import { openStore } from '../../src/store/database.ts';

const cli = fileURLToPath(new URL('../../src/cli.ts', import.meta.url));
let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'airlock-cli-errors-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const airlockWith = (env: Record<string, string>, ...args: string[]) =>
  spawnSync(process.execPath, [cli, ...args], {
    cwd: dir,
    env: { PATH: process.env.PATH, AIRLOCK_DATA_DIR: dir, ...env },
    encoding: 'utf8',
  });
const airlockIn = (dataDir: string, ...args: string[]) => airlockWith({ AIRLOCK_DATA_DIR: dataDir }, ...args);
const airlock = (...args: string[]) => airlockWith({}, ...args);

const COMMANDS = [
  ['run'],
  ['worker'],
  ['control'],
  ['image', 'build'],
  ['audit', 'verify'],
  ['audit', 'export'],
  ['audit', 'purge'],
  ['config', 'check'],
  ['config', 'schema'],
];

it('every command has its own --help, and a group lists its commands', () => {
  for (const command of COMMANDS) {
    for (const flag of ['--help', '-h']) {
      const result = airlock(...command, flag);
      expect(result.stderr).toBe('');
      expect(result.status).toBe(0);
      expect(result.stdout).toMatch(new RegExp(`^usage: airlock ${command.join(' ')}\\b`));
    }
  }
  // Help wins over the command's own option checks.
  expect(airlock('run', '/some/repo', '--prompt', 'x', '--help').stdout).toMatch(/^usage: airlock run /);
  expect(airlock('help', 'audit', 'purge').stdout).toMatch(/^usage: airlock audit purge /);
  const audit = airlock('audit', '--help');
  expect(audit.status).toBe(0);
  expect(audit.stdout).toContain('airlock audit verify');
  expect(audit.stdout).not.toContain('airlock run');
  expect(airlock('--help').stdout).toContain('airlock config schema');
});

it('airlock worker and airlock control name the settings their role lacks, and refuse another role', () => {
  const worker = airlock('worker');
  expect(worker.status).toBe(1);
  expect(worker.stderr).toContain('AIRLOCK_ROLE=worker needs DATABASE_URL');
  expect(worker.stderr).toContain('AIRLOCK_CONTROL_URL is required for a worker');
  const control = airlock('control');
  expect(control.status).toBe(1);
  expect(control.stderr).toContain('AIRLOCK_ROLE=control needs DATABASE_URL');
  const conflicting = airlockWith({ AIRLOCK_ROLE: 'control' }, 'worker');
  expect(conflicting.status).toBe(2);
  expect(conflicting.stderr).toContain('AIRLOCK_ROLE is control in this environment');
  expect(airlock('worker', 'extra').status).toBe(2);
});

it('an unknown command or option is an error that says what is unknown', () => {
  const unknown = airlock('frobnicate');
  expect(unknown.status).toBe(2);
  expect(unknown.stderr).toContain('unknown command: frobnicate');
  const sub = airlock('audit', 'verfy');
  expect(sub.status).toBe(2);
  expect(sub.stderr).toContain('unknown command: audit verfy');
  expect(sub.stderr).toContain('airlock audit verify');
  const bare = airlock('audit');
  expect(bare.status).toBe(2);
  expect(bare.stderr).toContain('airlock audit needs a command');
  const option = airlock('run', '/repo', '--prompt', 'x', '--bogus');
  expect(option.status).toBe(2);
  expect(option.stderr).toContain("'--bogus'");
  expect(option.stderr).toContain('airlock run --help');
});

it('audit verify of a task that does not exist is an error, not "ok"', async () => {
  const store = await openStore({ file: path.join(dir, 'airlock.sqlite') });
  const audit = new AuditLog(store, systemClock, new SecretRedactor());
  audit.append('t1', 'step', {});
  await audit.flush();
  await store.close();
  const result = airlock('audit', 'verify', 'nosuchtask');
  expect(result.status).toBe(1);
  expect(result.stdout).not.toContain('ok');
  expect(result.stderr).toContain('task nosuchtask has no audit record');
  expect(airlock('audit', 'verify', 't1').status).toBe(0);
});

it('commands never create a database where there is none, and say where they looked', () => {
  const dataDir = path.join(dir, 'data');
  for (const command of [
    ['audit', 'verify'],
    ['audit', 'verify', 't1'],
    ['audit', 'export', 't1'],
    ['audit', 'purge', '--older-than', '0', '--reason', 'r'],
  ]) {
    const result = airlockIn(dataDir, ...command);
    expect(result.status).toBe(1);
    expect(result.stderr).toContain(`there is no airlock data at ${path.join(dataDir, 'airlock.sqlite')}`);
    expect(result.stderr).toContain('AIRLOCK_DATA_DIR');
  }
  expect(existsSync(dataDir)).toBe(false);
  // The default data folder is ./data of the current folder: nothing appears there either.
  const bare = spawnSync(process.execPath, [cli, 'audit', 'verify'], {
    cwd: dir,
    env: { PATH: process.env.PATH },
    encoding: 'utf8',
  });
  expect(bare.status).toBe(1);
  expect(existsSync(path.join(dir, 'data'))).toBe(false);
});

it('config check on a file that is not there names the file and says what to give', () => {
  const missing = airlock('config', 'check', 'nope/airlock.yml');
  expect(missing.status).toBe(1);
  expect(missing.stderr).toContain(`${path.join(dir, 'nope/airlock.yml')} does not exist`);
  expect(missing.stderr).toContain('.github/airlock.yml');
  expect(missing.stderr).not.toContain('ENOENT');
  const folder = airlock('config', 'check', dir);
  expect(folder.status).toBe(1);
  expect(folder.stderr).toContain(`${dir} is a folder`);
});
