import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/audit-log.ts';
import { systemClock } from '../../src/clock.ts';
import { SecretRedactor } from '../../src/secrets.ts';
import { openDatabase, openSqliteStore, openStore, type Store } from '../../src/store/database.ts';
import { TaskStore } from '../../src/tasks/task-store.ts';
import { newTaskInput } from '../helpers/task-fixture.ts';
import { insertTask } from '../helpers/task-rows.ts';
import { createTestDatabase, DIALECTS } from '../helpers/test-store.ts';

const cli = fileURLToPath(new URL('../../src/cli.ts', import.meta.url));
describe.each(DIALECTS)('airlock audit commands on %s', (dialect) => {
  let dir: string;
  let taskId: string;
  let databaseUrl: string | undefined;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'airlock-cli-audit-'));
    if (dialect === 'postgres') {
      // A deployment on PostgreSQL: the commands find it through DATABASE_URL.
      databaseUrl = await createTestDatabase();
      const store = await openStore({ url: databaseUrl });
      const at = new Date().toISOString();
      taskId = await insertTask(store, { state: 'failed', reason: 'test', created_at: at, finished_at: at });
      await appendRecord(store, taskId);
      await store.close();
      return;
    }
    const db = openDatabase(path.join(dir, 'airlock.sqlite'));
    const store = openSqliteStore(db);
    const tasks = new TaskStore(store, systemClock);
    taskId = (await tasks.create(newTaskInput({ issueNumber: 3, actorId: 101, triggerEvent: 'issues' }))).id;
    await appendRecord(store, taskId);
    await tasks.transition(taskId, 'starting');
    await tasks.transition(taskId, 'failed', { reason: 'test' });
    db.close();
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function appendRecord(store: Store, id: string): Promise<void> {
    const audit = new AuditLog(store, systemClock, new SecretRedactor());
    audit.append(id, 'task.created', { actor: { login: 'alice' } });
    audit.append(id, 'task.prompt', { text: 'the-prompt-text' });
    audit.append(id, 'agent.event', { kind: 'message', text: 'the-model-said' });
    await audit.flush();
  }

  const airlock = (...args: string[]) =>
    spawnSync(process.execPath, [cli, ...args], {
      env: {
        PATH: process.env.PATH,
        AIRLOCK_DATA_DIR: dir,
        ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
      },
      encoding: 'utf8',
    });

  it('airlock audit export writes the record as JSON and JSON Lines', () => {
    const json = airlock('audit', 'export', taskId);
    expect(json.status).toBe(0);
    expect(JSON.parse(json.stdout)).toMatchObject({
      format: 'airlock.audit.v1',
      task: { id: taskId, state: 'failed' },
      chain: { events: 3, verified: true },
    });
    const jsonl = airlock('audit', 'export', taskId, '--format', 'jsonl');
    expect(
      jsonl.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).type),
    ).toEqual(['task.created', 'task.prompt', 'agent.event']);
    expect(airlock('audit', 'export', 'nope').stderr).toContain('task nope does not exist');
    expect(airlock('audit', 'export', taskId, '--format', 'xml').status).toBe(2);
  });

  it('airlock audit purge needs a reason, records itself in the chain, and leaves it verifiable', () => {
    const noReason = airlock('audit', 'purge', '--older-than', '0');
    expect(noReason.status).toBe(2);
    expect(noReason.stderr).toContain('--reason is required');
    expect(airlock('audit', 'purge', '--older-than', '0', '--dry-run').stdout).toContain(
      'would purge 2 text(s)',
    );
    const purged = airlock(
      'audit',
      'purge',
      '--older-than',
      '0d',
      '--task',
      taskId,
      '--reason',
      'secret pasted in an issue',
      '--operator',
      'ops@acme',
    );
    expect(purged.status).toBe(0);
    expect(purged.stdout).toContain('purged 2 text(s)');
    const record = JSON.parse(airlock('audit', 'export', taskId).stdout);
    expect(record.events[1]).toMatchObject({ data: {}, content: { state: 'purged' } });
    expect(record.events.at(-1)).toMatchObject({
      type: 'audit.purged',
      data: { purged: [2, 3], reason: 'secret pasted in an issue', operator: 'ops@acme' },
    });
    expect(JSON.stringify(record)).not.toContain('the-model-said');
    expect(airlock('audit', 'verify', taskId).stdout).toMatch(/^ok: 1 task\(s\), 4 event\(s\)/m);
  });
});
