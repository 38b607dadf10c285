import type { AuditEvent } from '../audit/audit-event.ts';
import type { Clock } from '../clock.ts';
import { modelNameMatches } from '../policy/name-patterns.ts';
import type { ModelPrice } from '../policy/operator-policy.ts';
import type { EffectivePolicy } from '../policy/policy-for.ts';
import type { Store } from '../store/database.ts';

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
  readonly #store: Store;
  readonly #clock: Clock;
  readonly #prices: Record<string, ModelPrice>;

  constructor(store: Store, clock: Clock, prices: Record<string, ModelPrice>) {
    this.#store = store;
    this.#clock = clock;
    this.#prices = prices;
  }

  /**
   * Records (again, idempotently) what a task spent from its `proxy.model` events; counts towards
   * the month it is first recorded in.
   */
  async record(
    task: { id: string; repoFullName: string },
    events: readonly AuditEvent[],
  ): Promise<TaskSpend> {
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
    await this.#store.transaction(async () => {
      const first = await this.#store.db
        .selectFrom('task_spend')
        .select('month')
        .where('task_id', '=', task.id)
        .limit(1)
        .executeTakeFirst();
      const month = first?.month ?? monthOf(now).month;
      for (const [model, sum] of totals) {
        const price = model === UNNAMED_MODEL ? undefined : priceFor(this.#prices, model);
        const cost = price
          ? (sum.input * price.input_usd_per_mtok + sum.output * price.output_usd_per_mtok) / 1_000_000
          : null;
        await this.#store.db
          .insertInto('task_spend')
          .values({
            task_id: task.id,
            model,
            repo_full_name: task.repoFullName,
            owner,
            month,
            input_tokens: sum.input,
            output_tokens: sum.output,
            cost_usd: cost,
            recorded_at: now.toISOString(),
          })
          .onConflict((oc) =>
            oc.columns(['task_id', 'model']).doUpdateSet((eb) => ({
              input_tokens: eb.ref('excluded.input_tokens'),
              output_tokens: eb.ref('excluded.output_tokens'),
              cost_usd: eb.ref('excluded.cost_usd'),
              recorded_at: eb.ref('excluded.recorded_at'),
            })),
          )
          .execute();
      }
    });
    return (await this.ofTask(task.id)) as TaskSpend;
  }

  /** What a task spent, or undefined before it was recorded. */
  async ofTask(taskId: string): Promise<TaskSpend | undefined> {
    const rows = await this.#store.db
      .selectFrom('task_spend')
      .select(['model', 'input_tokens', 'output_tokens', 'cost_usd'])
      .where('task_id', '=', taskId)
      .orderBy('model')
      .execute();
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

  /**
   * Spend per repository and month, newest month first (for /metrics and the web UI). Names that
   * differ only in case are one repository, as on GitHub.
   */
  async byRepoMonth(filter: { month?: string } = {}): Promise<MonthSpend[]> {
    let query = this.#store.db
      .selectFrom('task_spend')
      .select((eb) => [
        eb.fn.min('owner').as('owner'),
        eb.fn.min('repo_full_name').as('repo'),
        'month',
        eb.fn.sum<number | string>('input_tokens').as('input'),
        eb.fn.sum<number | string>('output_tokens').as('output'),
        eb.fn.coalesce(eb.fn.sum<number>('cost_usd'), eb.lit(0)).as('cost'),
      ])
      .groupBy((eb) => [eb.fn('lower', ['owner']), eb.fn('lower', ['repo_full_name']), 'month']);
    if (filter.month) query = query.where('month', '=', filter.month);
    const rows = await query.orderBy('month', 'desc').orderBy('repo').execute();
    // PostgreSQL sums integers as numeric, which its driver hands over as text.
    return rows.map((r) => ({
      owner: r.owner,
      repo: r.repo,
      month: r.month,
      inputTokens: Number(r.input),
      outputTokens: Number(r.output),
      costUsd: Number(r.cost),
    }));
  }

  /** What a repository, or an organisation, spent in the month of `at` (now by default). */
  async spentUsd(
    scope: 'repository' | 'organisation',
    name: string,
    at: Date = this.#clock.now(),
  ): Promise<number> {
    const column = scope === 'repository' ? 'repo_full_name' : 'owner';
    const row = await this.#store.db
      .selectFrom('task_spend')
      .select((eb) => eb.fn.coalesce(eb.fn.sum<number>('cost_usd'), eb.lit(0)).as('cost'))
      .where((eb) => eb(eb.fn('lower', [column]), '=', eb.fn('lower', [eb.val(name)])))
      .where('month', '=', monthOf(at).month)
      .executeTakeFirstOrThrow();
    return Number(row.cost);
  }

  /**
   * The first monthly cap (the repository's, then its organisation's) this month's spend has
   * reached, or undefined when a new task may start.
   */
  async capReached(repoFullName: string, spend: EffectivePolicy['spend']): Promise<CapReached | undefined> {
    const now = this.#clock.now();
    const { month, next } = monthOf(now);
    const resetsAt = next.toISOString();
    const checks = [
      { scope: 'repository' as const, name: repoFullName, cap: spend.repo_monthly_usd },
      { scope: 'organisation' as const, name: repoFullName.split('/')[0]!, cap: spend.org_monthly_usd },
    ];
    for (const { scope, name, cap } of checks) {
      if (cap === undefined) continue;
      const spent = await this.spentUsd(scope, name, now);
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
