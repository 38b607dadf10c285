import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sql } from 'kysely';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/audit-log.ts';
import { purgeConversation } from '../../src/audit/retention.ts';
import { verifyAuditChains } from '../../src/audit/verify-chain.ts';
import type { Clock } from '../../src/clock.ts';
import { SecretRedactor } from '../../src/secrets.ts';
import { openStore, type Store } from '../../src/store/database.ts';
import { insertTask } from '../helpers/task-rows.ts';
import { DIALECTS, openTestStore } from '../helpers/test-store.ts';

describe.each(DIALECTS)('retention on %s', (dialect) => {
  let dir: string;
  let store: Store;
  let now: Date;
  const clock: Clock = { now: () => now, after: () => () => {} };
  let audit: AuditLog;

  /** A task that ran and ended now, with a prompt and a model message kept beside its chain. */
  async function finishedTask(repo = 'acme/widgets'): Promise<string> {
    const at = now.toISOString();
    const id = await insertTask(store, {
      repo_full_name: repo,
      state: 'succeeded',
      created_at: at,
      started_at: at,
      finished_at: at,
    });
    audit.append(id, 'task.created', { actor: { login: 'alice' } });
    audit.append(id, 'task.prompt', { text: 'PROMPT-TEXT-ZEBRA make the greeting friendlier' });
    audit.append(id, 'agent.event', { kind: 'message', text: 'MODEL-SAID-GIRAFFE done' });
    audit.append(id, 'agent.exit', { code: 0 });
    await audit.flush();
    return id;
  }
  const run = (sqlText: string) => sql.raw(sqlText).execute(store.db);

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'airlock-retention-'));
    // On SQLite a file, as in production: a test reads its bytes.
    store =
      dialect === 'sqlite'
        ? await openStore({ file: path.join(dir, 'airlock.sqlite') })
        : await openTestStore(dialect);
    now = new Date('2026-01-01T00:00:00Z');
    audit = new AuditLog(store, clock, new SecretRedactor());
  });
  afterEach(async () => {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  });

  describe('prompt and model-response retention', () => {
    it('keeps the text beside the chain: the chain holds its digest, readers get the text', async () => {
      const id = await finishedTask();
      const [, prompt, said, exit] = await audit.events(id);
      expect(prompt).toMatchObject({
        data: { text: expect.stringContaining('ZEBRA') },
        content: { state: 'kept' },
      });
      expect(said?.content?.sha256).toMatch(/^[0-9a-f]{64}$/);
      expect(exit?.content).toBeUndefined();
      const stored = await store.db
        .selectFrom('audit_events')
        .select('data_json')
        .where('task_id', '=', id)
        .where('seq', '=', 2)
        .executeTakeFirstOrThrow();
      expect(stored.data_json).not.toContain('ZEBRA');
      expect((await verifyAuditChains(store)).ok).toBe(true);
    });

    it('purges only with a record in the chain; the chain still verifies', async () => {
      const id = await finishedTask();
      await expect(run(`DELETE FROM audit_payloads WHERE task_id = '${id}'`)).rejects.toThrow(
        /records the purge/,
      );
      await expect(run(`UPDATE audit_payloads SET data_json = '{}'`)).rejects.toThrow(/cannot be changed/);

      now = new Date('2026-01-20T00:00:00Z');
      expect(
        (await purgeConversation({ store, audit, clock }, { olderThanDays: 30, reason: 'r', operator: 'op' }))
          .tasks,
      ).toEqual([]);
      const report = await purgeConversation(
        { store, audit, clock },
        { olderThanDays: 7, reason: 'policy', operator: 'ops' },
      );
      expect(report).toMatchObject({ tasks: [id], payloads: 2, dryRun: false });
      const events = await audit.events(id);
      expect(events[1]).toMatchObject({ data: {}, content: { state: 'purged' } });
      expect(events.at(-1)).toMatchObject({
        type: 'audit.purged',
        data: { purged: [2, 3], reason: 'policy', operator: 'ops', olderThanDays: 7 },
      });
      expect(await verifyAuditChains(store)).toMatchObject({ ok: true, events: 5 });
      if (dialect === 'sqlite') {
        // Overwritten in the file, not only unlinked from it.
        store.sqlite!.pragma('wal_checkpoint(TRUNCATE)');
        const bytes = readFileSync(path.join(dir, 'airlock.sqlite')).toString('latin1');
        expect(bytes).not.toContain('MODEL-SAID-GIRAFFE');
      } else {
        const rows = await sql<{ row: string }>`SELECT p::text AS row FROM audit_payloads p`.execute(
          store.db,
        );
        expect(JSON.stringify(rows.rows)).not.toContain('MODEL-SAID-GIRAFFE');
      }
    });

    it('a dry run changes nothing; --task narrows the purge', async () => {
      const a = await finishedTask();
      now = new Date('2026-01-01T00:00:01Z');
      const b = await finishedTask();
      now = new Date('2026-01-02T00:00:00Z');
      expect(
        await purgeConversation(
          { store, audit, clock },
          { olderThanDays: 0, reason: 'r', operator: 'op', dryRun: true },
        ),
      ).toMatchObject({ tasks: [a, b], payloads: 4, dryRun: true });
      await purgeConversation(
        { store, audit, clock },
        { olderThanDays: 0, taskId: b, reason: 'leak', operator: 'op' },
      );
      expect((await audit.events(a))[1]?.content?.state).toBe('kept');
      expect((await audit.events(b))[1]?.content?.state).toBe('purged');
    });

    it('verify catches text deleted or changed behind the purge rule', async () => {
      const id = await finishedTask();
      if (dialect === 'sqlite') {
        await run('DROP TRIGGER audit_payloads_purge_only');
        await run('DROP TRIGGER audit_payloads_never_change');
      } else {
        await run('DROP TRIGGER audit_payloads_purge_only ON audit_payloads');
        await run('DROP TRIGGER audit_payloads_never_change ON audit_payloads');
      }
      await run(
        `UPDATE audit_payloads SET data_json = '{"text":"forged"}' WHERE task_id = '${id}' AND seq = 3`,
      );
      expect((await verifyAuditChains(store, id)).problems).toEqual([
        { taskId: id, seq: 3, problem: 'the text of event 3 (agent.event) was changed after it was written' },
      ]);
      await run(`DELETE FROM audit_payloads WHERE task_id = '${id}' AND seq = 2`);
      await run(`DELETE FROM audit_payloads WHERE task_id = '${id}' AND seq = 3`);
      expect((await verifyAuditChains(store, id)).problems[0]).toMatchObject({
        seq: 2,
        problem: expect.stringContaining('no audit.purged event records its purge'),
      });
    });

    it('with a zero-day policy the text is never stored, only its digest', async () => {
      const strict = new AuditLog(store, clock, new SecretRedactor(), { keepConversation: false });
      strict.append('t', 'task.prompt', { text: 'never-stored-okapi' });
      expect((await strict.events('t'))[0]).toMatchObject({ data: {}, content: { state: 'not_kept' } });
      const everything = await Promise.all([
        store.db.selectFrom('audit_events').selectAll().execute(),
        store.db.selectFrom('audit_payloads').selectAll().execute(),
      ]);
      expect(JSON.stringify(everything)).not.toContain('okapi');
      expect((await verifyAuditChains(store, 't')).ok).toBe(true);
    });
  });

  describe('what the retention policy covers', () => {
    it('agent session and usage records stay in the chain; messages and tool calls are retained text', async () => {
      audit.append('t', 'agent.event', { kind: 'usage', input_tokens: 10 });
      audit.append('t', 'agent.event', { kind: 'tool_call', name: 'bash', input: 'ls' });
      audit.append('t', 'agent.info', { agent: 'claude', version: '2.0.1' });
      const [usage, call, info] = await audit.events('t');
      expect(usage?.content).toBeUndefined();
      expect(call?.content?.state).toBe('kept');
      expect(info?.content).toBeUndefined();
      expect((await verifyAuditChains(store, 't')).ok).toBe(true);
    });
  });

  describe('retention with group commit (as the control plane runs it)', () => {
    it('the purge record is written in the purge transaction, so the deletion is allowed', async () => {
      audit = new AuditLog(store, clock, new SecretRedactor(), { groupCommit: { maxEvents: 100 } });
      const id = await finishedTask();
      now = new Date('2026-02-01T00:00:00Z');
      const report = await purgeConversation(
        { store, audit, clock },
        { olderThanDays: 7, reason: 'policy', operator: 'ops' },
      );
      expect(report).toMatchObject({ tasks: [id], payloads: 2 });
      expect((await audit.events(id)).at(-1)).toMatchObject({ type: 'audit.purged', seq: 5 });
      expect(await verifyAuditChains(store)).toMatchObject({ ok: true });
    });
  });
});
