import type { AuditEvent } from '../audit/audit-event.ts';
import type { Clock } from '../clock.ts';
import { modelNameMatches } from '../policy/name-patterns.ts';
import type { ModelPrice } from '../policy/operator-policy.ts';
import type { EffectivePolicy } from '../policy/policy-for.ts';
import type { Db } from '../store/database.ts';

/** A model whose calls the proxy did not see named (an unreadable body): counted, never priced. */
export const UNNAMED_MODEL = '(unnamed)';

/** What one task spent on one model. */
export interface ModelSpend {
  model: string;
  inputTokens: number;
  outputTokens: number;
  /** US dollars at the policy's price; null when no price matches the model. */
  costUsd: number | null;
}

/** What a task spent, every model together. */
export interface TaskSpend {
  inputTokens: number;
  outputTokens: number;
  costUsd: number;
  /** Models whose calls were counted but had no price. */
  unpriced: string[];
  byModel: ModelSpend[];
}

/** One repository's (or organisation's) spend in one month. */
export interface MonthSpend {
  owner: string;
  repo: string;
  month: string;
  inputTokens: number;
  outputTokens: number;
  costUsd: number;
}

/** A monthly cap a new task would go past: which, how much is spent, when it resets. */
export interface CapReached {
  scope: 'repository' | 'organisation';
  name: string;
  capUsd: number;
  spentUsd: number;
  month: string;
  resetsAt: string;
  message: string;
}

/** The price for `model`: the longest pattern that matches it, or undefined. */
export function priceFor(prices: Record<string, ModelPrice>, model: string): ModelPrice | undefined {
  const matching = Object.keys(prices)
    .filter((pattern) => modelNameMatches(model, pattern))
    .sort((a, b) => b.replace(/\*/g, '').length - a.replace(/\*/g, '').length);
  return matching.length ? prices[matching[0]!] : undefined;
}

/** The UTC month (YYYY-MM) an instant falls in, and the instant the next one starts. */
export function monthOf(at: Date): { month: string; next: Date } {
  const month = at.toISOString().slice(0, 7);
  const next = new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth() + 1, 1));
  return { month, next };
}

/**
 * Model spend per task, repository and organisation, per UTC month. A task's tokens are read from
 * its own record (each `proxy.model` event: the model the forwarded request named and the usage
 * the proxy counted) and priced with the operator's table, when its proxy has closed.
 */
export class SpendLedger {
  readonly #db: Db;
  readonly #clock: Clock;
  readonly #prices: Record<string, ModelPrice>;

  constructor(db: Db, clock: Clock, prices: Record<string, ModelPrice>) {
    this.#db = db;
    this.#clock = clock;
    this.#prices = prices;
  }

  /**
   * Records (again, idempotently) what a task spent from its `proxy.model` events; counts towards
   * the month it is first recorded in.
   */
  record(task: { id: string; repoFullName: string }, events: readonly AuditEvent[]): TaskSpend {
    const totals = new Map<string, { input: number; output: number }>();
    for (const event of events) {
      if (event.type !== 'proxy.model') continue;
      const usage = event.data.usage as { inputTokens?: unknown; outputTokens?: unknown } | undefined;
      const model = typeof event.data.model === 'string' ? event.data.model : UNNAMED_MODEL;
      const sum = totals.get(model) ?? { input: 0, output: 0 };
      sum.input += Number(usage?.inputTokens ?? 0) || 0;
      sum.output += Number(usage?.outputTokens ?? 0) || 0;
      totals.set(model, sum);
    }
    const owner = task.repoFullName.split('/')[0]!;
    const now = this.#clock.now();
    const first = this.#db.prepare('SELECT month FROM task_spend WHERE task_id = ? LIMIT 1').get(task.id) as
      | { month: string }
      | undefined;
    const month = first?.month ?? monthOf(now).month;
    const upsert = this.#db.prepare(
      `INSERT INTO task_spend (task_id, model, repo_full_name, owner, month, input_tokens, output_tokens, cost_usd, recorded_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (task_id, model) DO UPDATE SET input_tokens = excluded.input_tokens,
         output_tokens = excluded.output_tokens, cost_usd = excluded.cost_usd, recorded_at = excluded.recorded_at`,
    );
    this.#db.transaction(() => {
      for (const [model, sum] of totals) {
        const price = model === UNNAMED_MODEL ? undefined : priceFor(this.#prices, model);
        const cost = price
          ? (sum.input * price.input_usd_per_mtok + sum.output * price.output_usd_per_mtok) / 1_000_000
          : null;
        upsert.run(
          task.id,
          model,
          task.repoFullName,
          owner,
          month,
          sum.input,
          sum.output,
          cost,
          now.toISOString(),
        );
      }
    })();
    return this.ofTask(task.id) as TaskSpend;
  }

  /** What a task spent, or undefined before it was recorded. */
  ofTask(taskId: string): TaskSpend | undefined {
    const rows = this.#db
      .prepare(
        'SELECT model, input_tokens, output_tokens, cost_usd FROM task_spend WHERE task_id = ? ORDER BY model',
      )
      .all(taskId) as Array<{
      model: string;
      input_tokens: number;
      output_tokens: number;
      cost_usd: number | null;
    }>;
    if (rows.length === 0) return undefined;
    const byModel = rows.map((r) => ({
      model: r.model,
      inputTokens: r.input_tokens,
      outputTokens: r.output_tokens,
      costUsd: r.cost_usd,
    }));
    return {
      inputTokens: byModel.reduce((n, m) => n + m.inputTokens, 0),
      outputTokens: byModel.reduce((n, m) => n + m.outputTokens, 0),
      costUsd: byModel.reduce((n, m) => n + (m.costUsd ?? 0), 0),
      unpriced: byModel
        .filter((m) => m.costUsd === null && m.inputTokens + m.outputTokens > 0)
        .map((m) => m.model),
      byModel,
    };
  }

  /** Spend per repository and month, newest month first (for /metrics and the web UI). */
  byRepoMonth(filter: { month?: string } = {}): MonthSpend[] {
    return (
      this.#db
        .prepare(
          `SELECT owner, repo_full_name AS repo, month, sum(input_tokens) AS input, sum(output_tokens) AS output,
             coalesce(sum(cost_usd), 0) AS cost
           FROM task_spend ${filter.month ? 'WHERE month = ?' : ''}
           GROUP BY owner, repo_full_name COLLATE NOCASE, month ORDER BY month DESC, repo_full_name`,
        )
        .all(...(filter.month ? [filter.month] : [])) as Array<{
        owner: string;
        repo: string;
        month: string;
        input: number;
        output: number;
        cost: number;
      }>
    ).map((r) => ({
      owner: r.owner,
      repo: r.repo,
      month: r.month,
      inputTokens: r.input,
      outputTokens: r.output,
      costUsd: r.cost,
    }));
  }

  /** What a repository, or an organisation, spent in the month of `at` (now by default). */
  spentUsd(scope: 'repository' | 'organisation', name: string, at: Date = this.#clock.now()): number {
    const column = scope === 'repository' ? 'repo_full_name' : 'owner';
    const row = this.#db
      .prepare(
        `SELECT coalesce(sum(cost_usd), 0) AS cost FROM task_spend WHERE ${column} = ? COLLATE NOCASE AND month = ?`,
      )
      .get(name, monthOf(at).month) as { cost: number };
    return row.cost;
  }

  /**
   * The first monthly cap (the repository's, then its organisation's) this month's spend has
   * reached, or undefined when a new task may start.
   */
  capReached(repoFullName: string, spend: EffectivePolicy['spend']): CapReached | undefined {
    const now = this.#clock.now();
    const { month, next } = monthOf(now);
    const resetsAt = next.toISOString();
    const checks = [
      { scope: 'repository' as const, name: repoFullName, cap: spend.repo_monthly_usd },
      { scope: 'organisation' as const, name: repoFullName.split('/')[0]!, cap: spend.org_monthly_usd },
    ];
    for (const { scope, name, cap } of checks) {
      if (cap === undefined) continue;
      const spent = this.spentUsd(scope, name, now);
      if (spent < cap) continue;
      return {
        scope,
        name,
        capUsd: cap,
        spentUsd: spent,
        month,
        resetsAt,
        message: `the ${scope} ${name} has spent ${usd(spent)} on model calls in ${month}, which reaches this airlock's monthly cap of ${usd(cap)} for the ${scope}; the cap resets on ${resetsAt.slice(0, 10)} at 00:00 UTC`,
      };
    }
    return undefined;
  }
}

/** US dollars as people read them: cents, or more places below a cent. */
export function usd(amount: number): string {
  if (amount !== 0 && Math.abs(amount) < 0.01) return `$${amount.toFixed(4)}`;
  return `$${amount.toFixed(2)}`;
}
