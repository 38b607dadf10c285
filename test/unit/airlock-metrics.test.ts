import { afterEach, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/audit-log.ts';
import { AirlockMetrics } from '../../src/metrics/airlock-metrics.ts';
import type { Store } from '../../src/store/database.ts';
import { insertTask } from '../helpers/task-rows.ts';
import { DIALECTS, openTestStore } from '../helpers/test-store.ts';

let seq = 0;
const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();
const event = (taskId: string, type: string, data: Record<string, unknown>, second: number): AuditEvent => ({
  taskId,
  seq: ++seq,
  ts: at(second),
  type,
  data,
  prevHash: '0'.repeat(64),
  hash: '0'.repeat(64),
});

describe.each(DIALECTS)('metrics on %s', (dialect) => {
  let store: Store | undefined;
  afterEach(async () => {
    await store?.close();
  });

  it('times phases, counts boots, refusals by channel and GitHub errors by status', async () => {
    store = await openTestStore(dialect);
    const metrics = new AirlockMetrics(store, { processMetrics: false });
    const feed: Array<[string, Record<string, unknown>, number]> = [
      ['task.created', {}, 0],
      ['task.state', { state: 'starting' }, 3],
      ['vm.created', { accelerator: 'tcg', bootMs: 5500 }, 8],
      ['task.state', { state: 'running' }, 9],
      ['proxy.egress', { decision: 'refused' }, 10],
      ['proxy.egress', { decision: 'allowed' }, 10],
      ['proxy.git', { decision: 'refused' }, 11],
      ['git.ref_update', { decision: 'refused' }, 11],
      ['proxy.refused', { provider: 'openai' }, 12],
      ['proxy.budget_exceeded', {}, 12],
      ['task.state', { state: 'pushing' }, 29],
      ['task.state', { state: 'succeeded' }, 30],
    ];
    for (const [type, data, second] of feed) metrics.observeAuditEvent(event('t1', type, data, second));
    const fetchAnswering = (status: number) =>
      metrics.countGitHubErrors(async () => new Response(null, { status }));
    await fetchAnswering(200)('http://x');
    await fetchAnswering(404)('http://x');
    await fetchAnswering(502)('http://x');
    await expect(
      metrics.countGitHubErrors(async () => Promise.reject(new Error('reset')))('http://x'),
    ).rejects.toThrow();

    const text = (await metrics.render()).body;
    for (const [phase, seconds] of [
      ['queued', 3],
      ['starting', 6],
      ['running', 20],
      ['pushing', 1],
    ] as const) {
      expect(text).toMatch(
        new RegExp(`^airlock_task_phase_seconds_sum\\{phase="${phase}"\\} ${seconds}$`, 'm'),
      );
    }
    expect(text).toMatch(/^airlock_vm_boots_total\{accelerator="tcg"\} 1$/m);
    expect(text).toMatch(/^airlock_vm_boot_seconds_sum\{accelerator="tcg"\} 5.5$/m);
    for (const channel of ['egress', 'git', 'ref_update', 'model', 'budget']) {
      expect(text).toMatch(new RegExp(`^airlock_proxy_refusals_total\\{channel="${channel}"\\} 1$`, 'm'));
    }
    expect(text).toMatch(/^airlock_github_api_errors_total\{status="404"\} 1$/m);
    expect(text).toMatch(/^airlock_github_api_errors_total\{status="502"\} 1$/m);
    expect(text).toMatch(/^airlock_github_api_errors_total\{status="network"\} 1$/m);
    expect(text).not.toMatch(/status="200"/);
  });

  it('reads tasks by state and outcome, and spend, from the database at scrape time', async () => {
    store = await openTestStore(dialect);
    const metrics = new AirlockMetrics(store, { processMetrics: false });
    const at = at0();
    await insertTask(store, { state: 'queued', created_at: at });
    await insertTask(store, { state: 'running', created_at: at });
    const pushed = { outcome: 'changes_pushed', headSha: 'a'.repeat(40), summary: 's' };
    const done = await insertTask(store, {
      state: 'succeeded',
      created_at: at,
      finished_at: at,
      result_json: JSON.stringify(pushed),
    });
    await insertTask(store, {
      state: 'succeeded',
      created_at: at,
      finished_at: at,
      result_json: JSON.stringify(pushed),
    });
    await insertTask(store, { state: 'failed', created_at: at, finished_at: at });
    await store.db
      .insertInto('task_spend')
      .values([
        {
          task_id: done,
          model: 'claude-sonnet',
          repo_full_name: 'acme/widgets',
          owner: 'acme',
          month: '2026-01',
          input_tokens: 100_000,
          output_tokens: 50_000,
          cost_usd: 1.05,
          recorded_at: at,
        },
        {
          task_id: done,
          model: 'gpt-5',
          repo_full_name: 'acme/widgets',
          owner: 'acme',
          month: '2026-01',
          input_tokens: 1000,
          output_tokens: 10,
          cost_usd: null,
          recorded_at: at,
        },
      ])
      .execute();
    const text = (await metrics.render()).body;
    expect(text).toMatch(/^airlock_tasks\{state="queued"\} 1$/m);
    expect(text).toMatch(/^airlock_tasks\{state="running"\} 1$/m);
    expect(text).toMatch(/^airlock_tasks\{state="succeeded"\} 2$/m);
    expect(text).toMatch(/^airlock_tasks_finished\{state="succeeded",outcome="changes_pushed"\} 2$/m);
    expect(text).toMatch(/^airlock_tasks_finished\{state="failed",outcome="none"\} 1$/m);
    expect(text).not.toMatch(/^airlock_tasks_finished\{state="running"/m);
    const repo = 'org="acme",repository="acme/widgets",month="2026-01"';
    expect(text).toContain(`airlock_spend_usd{${repo}} 1.05\n`);
    expect(text).toContain(`airlock_spend_tokens{${repo},direction="input"} 101000\n`);
    expect(text).toContain(`airlock_spend_tokens{${repo},direction="output"} 50010\n`);
  });
});

const at0 = () => new Date(Date.UTC(2026, 0, 1)).toISOString();
