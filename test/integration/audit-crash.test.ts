import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/audit-log.ts';
import { verifyAuditChains } from '../../src/audit/verify-chain.ts';
import { systemClock } from '../../src/clock.ts';
import { SecretRedactor } from '../../src/secrets.ts';
import { openStore } from '../../src/store/database.ts';

const child = fileURLToPath(new URL('../helpers/audit-crash-child.ts', import.meta.url));
let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'airlock-audit-crash-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

it('kill -9 during group-committed appends leaves chains that verify, and a new process continues them', async () => {
  const file = path.join(dir, 'airlock.sqlite');
  const proc = spawn(process.execPath, [child], {
    env: { PATH: process.env.PATH, DB_FILE: file },
    stdio: 'pipe',
  });
  try {
    // The child says when 5,000 events are committed, and goes on appending: the kill lands mid-stream.
    await new Promise<void>((resolve, reject) => {
      let out = '';
      proc.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (/^committed \d+\n/m.test(out)) resolve();
      });
      proc.once('exit', (code) => reject(new Error(`child exited early (${code})`)));
    });
  } finally {
    proc.kill('SIGKILL');
    await new Promise((r) => proc.once('exit', r));
  }
  const store = await openStore({ file });
  try {
    const report = await verifyAuditChains(store);
    expect(report).toMatchObject({ ok: true, tasks: 5 });
    expect(report.events).toBeGreaterThanOrEqual(5_000);
    const audit = new AuditLog(store, systemClock, new SecretRedactor());
    for (let t = 0; t < 5; t++) audit.append(`task-${t}`, 'task.recovered', { from: 'running' });
    await audit.flush();
    expect(await verifyAuditChains(store)).toMatchObject({ ok: true, events: report.events + 5 });
  } finally {
    await store.close();
  }
});
