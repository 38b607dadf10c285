import { describe, expect, it } from 'vitest';
import { type CiVerdict, CiVerdicts } from '../../src/ci/ci-verdicts.ts';
import type { Store } from '../../src/store/database.ts';
import { ManualClock } from '../helpers/manual-clock.ts';
import { DIALECTS, testStores } from '../helpers/test-store.ts';

describe.each(DIALECTS)('CI verdicts on %s', (dialect) => {
  const openStore = testStores(dialect);

  /** A store with tasks t1 and t2 (a verdict names the task that pushed the commit). */
  async function open(): Promise<Store> {
    const store = await openStore();
    for (const id of ['t1', 't2']) {
      await store.db
        .insertInto('tasks')
        .values({
          id,
          repo_full_name: 'acme/app',
          kind: 'issue',
          state: 'succeeded',
          branch: 'airlock/issue-1',
          actor_login: 'dev',
          trigger_event: 'issues.labeled',
          created_at: '2026-11-01T00:00:00.000Z',
          updated_at: '2026-11-01T00:00:00.000Z',
        })
        .execute();
    }
    return store;
  }

  const verdict = (
    headSha: string,
    taskId: string,
    judged: 'passed' | 'failed',
    action: string,
  ): Omit<CiVerdict, 'decidedAt'> => ({
    repoFullName: 'acme/app',
    branch: 'airlock/issue-1',
    headSha,
    taskId,
    verdict: judged,
    action,
    fingerprint: judged === 'failed' ? `fp-${headSha}` : null,
    detail: { checks: 2 },
  });

  it('stores one verdict per commit; only a failed one may become passed', async () => {
    const clock = new ManualClock(Date.parse('2026-11-01T00:00:00Z'));
    const verdicts = new CiVerdicts(await open(), clock);
    expect(await verdicts.find('acme/app', 'aaa')).toBeUndefined();
    expect(await verdicts.record(verdict('aaa', 't1', 'failed', 'not retried'))).toBe(true);
    expect(await verdicts.record(verdict('aaa', 't1', 'failed', 'judged again'))).toBe(false);
    clock.advance(1000);
    expect(await verdicts.record(verdict('aaa', 't1', 'passed', 'marked ready for review'))).toBe(true);
    expect(await verdicts.record(verdict('aaa', 't1', 'failed', 'a late failure'))).toBe(false);
    expect(await verdicts.record(verdict('aaa', 't1', 'passed', 'passed again'))).toBe(false);
    expect(await verdicts.find('acme/app', 'aaa')).toEqual({
      ...verdict('aaa', 't1', 'passed', 'marked ready for review'),
      decidedAt: '2026-11-01T00:00:01.000Z',
    });
    expect(await verdicts.find('acme/other', 'aaa')).toBeUndefined();
  });

  it("gives a task's newest verdict", async () => {
    const clock = new ManualClock(Date.parse('2026-11-01T00:00:00Z'));
    const verdicts = new CiVerdicts(await open(), clock);
    await verdicts.record(verdict('aaa', 't1', 'failed', 'follow-up started'));
    clock.advance(60_000);
    await verdicts.record(verdict('bbb', 't1', 'passed', 'nothing to do'));
    await verdicts.record(verdict('ccc', 't2', 'failed', 'not retried'));
    expect(await verdicts.forTask('t1')).toMatchObject({ headSha: 'bbb', verdict: 'passed' });
    expect(await verdicts.forTask('t2')).toMatchObject({ headSha: 'ccc', detail: { checks: 2 } });
    expect(await verdicts.forTask('t3')).toBeUndefined();
  });
});
