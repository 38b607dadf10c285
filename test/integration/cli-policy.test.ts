import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, expect, it } from 'vitest';

const cli = fileURLToPath(new URL('../../src/cli.ts', import.meta.url));
let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'airlock-cli-policy-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const airlock = (env: Record<string, string>, ...args: string[]) =>
  spawnSync(process.execPath, [cli, ...args], {
    env: { PATH: process.env.PATH, ...env },
    encoding: 'utf8',
  });

it('airlock policy check prints the rules in force, for the defaults or one repository', async () => {
  const file = path.join(dir, 'policy.yml');
  await writeFile(file, 'defaults:\n  caps: { cpus: 6 }\nrepos:\n  acme/big:\n    caps: { cpus: 12 }\n');
  const defaults = airlock({ AIRLOCK_MAX_MEMORY_MIB: '4096' }, 'policy', 'check', file);
  expect(defaults.stderr).toBe('');
  expect(defaults.status).toBe(0);
  expect(defaults.stdout).toContain(`${file}: valid (1 override(s))`);
  expect(defaults.stdout).toMatch(/# defaults\n[\s\S]*cpus: 6\n[\s\S]*memory_mib: 4096\n/);
  const big = airlock({}, 'policy', 'check', file, '--repo', 'acme/big');
  expect(big.status).toBe(0);
  expect(big.stdout).toMatch(/# rules for acme\/big\n[\s\S]*cpus: 12\n/);
});

it('airlock policy check names the file and the bad field, and needs a file', async () => {
  const file = path.join(dir, 'policy.yml');
  await writeFile(file, 'defaults:\n  caps: { cpu: 6 }\n');
  const bad = airlock({}, 'policy', 'check', file);
  expect(bad.status).toBe(1);
  expect(bad.stderr).toContain(`policy file ${file} is invalid`);
  expect(bad.stderr).toMatch(/`defaults\.caps`: Unrecognized key: "cpu"/);
  const missing = airlock({}, 'policy', 'check');
  expect(missing.status).toBe(2);
  expect(missing.stderr).toContain('airlock policy check needs a file path');
});
