import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/audit-log.ts';
import { purgeConversation } from '../../src/audit/retention.ts';
import { verifyAuditChains } from '../../src/audit/verify-chain.ts';
import type { Clock } from '../../src/clock.ts';
import { DEFAULT_REPO_CONFIG } from '../../src/config/repo-config.ts';
import { SecretRedactor } from '../../src/secrets.ts';
import { type Db, openDatabase, openSqliteStore } from '../../src/store/database.ts';
import { TaskStore } from '../../src/tasks/task-store.ts';

let dir: string;
let db: Db;
let now: Date;
const clock: Clock = { now: () => now, after: () => () => {} };
let audit: AuditLog;
let tasks: TaskStore;

async function finishedTask(repo = 'acme/widgets'): Promise<string> {
  const task = await tasks.create({
    installationId: 1,
    repoFullName: repo,
    repoId: 7,
    issueNumber: 1,
    prNumber: null,
    kind: 'issue',
    baseRef: 'main',
    actorLogin: 'alice',
    actorId: 101,
    triggerEvent: 'issues',
    triggerUrl: null,
    deliveryId: null,
    instruction: null,
    context: {},
    start: { from: 'ref', ref: 'main' },
    config: DEFAULT_REPO_CONFIG,
  });
  audit.append(task.id, 'task.created', { actor: { login: 'alice' } });
  audit.append(task.id, 'task.prompt', { text: 'PROMPT-TEXT-ZEBRA make the greeting friendlier' });
  audit.append(task.id, 'agent.event', { kind: 'message', text: 'MODEL-SAID-GIRAFFE done' });
  audit.append(task.id, 'agent.exit', { code: 0 });
  await tasks.transition(task.id, 'starting');
  await tasks.transition(task.id, 'running');
  await tasks.transition(task.id, 'succeeded');
  return task.id;
}

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'airlock-retention-'));
  db = openDatabase(path.join(dir, 'airlock.sqlite'));
  now = new Date('2026-01-01T00:00:00Z');
  audit = new AuditLog(db, clock, new SecretRedactor());
  tasks = new TaskStore(openSqliteStore(db), clock);
});
afterEach(async () => {
  db.close();
  await rm(dir, { recursive: true, force: true });
});

describe('prompt and model-response retention', () => {
  it('keeps the text beside the chain: the chain holds its digest, readers get the text', async () => {
    const id = await finishedTask();
    const [, prompt, said, exit] = audit.events(id);
    expect(prompt).toMatchObject({
      data: { text: expect.stringContaining('ZEBRA') },
      content: { state: 'kept' },
    });
    expect(said?.content?.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(exit?.content).toBeUndefined();
    const stored = db.prepare(`SELECT data_json FROM audit_events WHERE task_id = ? AND seq = 2`).get(id) as {
      data_json: string;
    };
    expect(stored.data_json).not.toContain('ZEBRA');
    expect(verifyAuditChains(db).ok).toBe(true);
  });

  it('purges only with a record in the chain; the chain still verifies', async () => {
    const id = await finishedTask();
    expect(() => db.prepare('DELETE FROM audit_payloads WHERE task_id = ?').run(id)).toThrow(
      /records the purge/,
    );
    expect(() => db.prepare(`UPDATE audit_payloads SET data_json = '{}'`).run()).toThrow(/cannot be changed/);

    now = new Date('2026-01-20T00:00:00Z');
    expect(
      purgeConversation({ db, audit, clock }, { olderThanDays: 30, reason: 'r', operator: 'op' }).tasks,
    ).toEqual([]);
    const report = purgeConversation(
      { db, audit, clock },
      { olderThanDays: 7, reason: 'policy', operator: 'ops' },
    );
    expect(report).toMatchObject({ tasks: [id], payloads: 2, dryRun: false });
    const events = audit.events(id);
    expect(events[1]).toMatchObject({ data: {}, content: { state: 'purged' } });
    expect(events.at(-1)).toMatchObject({
      type: 'audit.purged',
      data: { purged: [2, 3], reason: 'policy', operator: 'ops', olderThanDays: 7 },
    });
    expect(verifyAuditChains(db)).toMatchObject({ ok: true, events: 5 });
    db.pragma('wal_checkpoint(TRUNCATE)');
    const bytes = readFileSync(path.join(dir, 'airlock.sqlite')).toString('latin1');
    expect(bytes).not.toContain('MODEL-SAID-GIRAFFE');
  });

  it('a dry run changes nothing; --task narrows the purge', async () => {
    const a = await finishedTask();
    const b = await finishedTask();
    now = new Date('2026-01-02T00:00:00Z');
    expect(
      purgeConversation(
        { db, audit, clock },
        { olderThanDays: 0, reason: 'r', operator: 'op', dryRun: true },
      ),
    ).toMatchObject({ tasks: [a, b], payloads: 4, dryRun: true });
    purgeConversation({ db, audit, clock }, { olderThanDays: 0, taskId: b, reason: 'leak', operator: 'op' });
    expect(audit.events(a)[1]?.content?.state).toBe('kept');
    expect(audit.events(b)[1]?.content?.state).toBe('purged');
  });

  it('verify catches text deleted or changed behind the purge rule', async () => {
    const id = await finishedTask();
    db.exec('DROP TRIGGER audit_payloads_purge_only; DROP TRIGGER audit_payloads_never_change');
    db.prepare(`UPDATE audit_payloads SET data_json = '{"text":"forged"}' WHERE task_id = ? AND seq = 3`).run(
      id,
    );
    expect(verifyAuditChains(db, id).problems).toEqual([
      { taskId: id, seq: 3, problem: 'the text of event 3 (agent.event) was changed after it was written' },
    ]);
    db.prepare('DELETE FROM audit_payloads WHERE task_id = ? AND seq = 2').run(id);
    db.prepare('DELETE FROM audit_payloads WHERE task_id = ? AND seq = 3').run(id);
    expect(verifyAuditChains(db, id).problems[0]).toMatchObject({
      seq: 2,
      problem: expect.stringContaining('no audit.purged event records its purge'),
    });
  });

  it('with a zero-day policy the text is never stored, only its digest', () => {
    const strict = new AuditLog(db, clock, new SecretRedactor(), { keepConversation: false });
    strict.append('t', 'task.prompt', { text: 'never-stored-okapi' });
    expect(strict.events('t')[0]).toMatchObject({ data: {}, content: { state: 'not_kept' } });
    expect(JSON.stringify(db.prepare('SELECT * FROM audit_events').all())).not.toContain('okapi');
    expect(verifyAuditChains(db, 't').ok).toBe(true);
  });
});

describe('what the retention policy covers', () => {
  it('agent session and usage records stay in the chain; messages and tool calls are retained text', () => {
    audit.append('t', 'agent.event', { kind: 'usage', input_tokens: 10 });
    audit.append('t', 'agent.event', { kind: 'tool_call', name: 'bash', input: 'ls' });
    audit.append('t', 'agent.info', { agent: 'claude', version: '2.0.1' });
    const [usage, call, info] = audit.events('t');
    expect(usage?.content).toBeUndefined();
    expect(call?.content?.state).toBe('kept');
    expect(info?.content).toBeUndefined();
    expect(verifyAuditChains(db, 't').ok).toBe(true);
  });
});

describe('retention with group commit (as the control plane runs it)', () => {
  it('the purge record is written in the purge transaction, so the deletion is allowed', async () => {
    audit = new AuditLog(db, clock, new SecretRedactor(), { groupCommit: { maxEvents: 100 } });
    const id = await finishedTask();
    now = new Date('2026-02-01T00:00:00Z');
    const report = purgeConversation(
      { db, audit, clock },
      { olderThanDays: 7, reason: 'policy', operator: 'ops' },
    );
    expect(report).toMatchObject({ tasks: [id], payloads: 2 });
    expect(audit.events(id).at(-1)).toMatchObject({ type: 'audit.purged', seq: 5 });
    expect(verifyAuditChains(db)).toMatchObject({ ok: true });
  });
});
