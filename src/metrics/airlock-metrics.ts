import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { AuditEvent } from '../audit/audit-log.ts';
import type { Store } from '../store/database.ts';
import { jsonText } from '../store/json-text.ts';

const PHASE_BUCKETS_S = [0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];
const BOOT_BUCKETS_S = [0.25, 0.5, 1, 2, 3, 5, 10, 20, 60];

/**
 * airlock's Prometheus metrics. Task counts are read from the database at scrape time (so they
 * survive restarts); everything else is counted from the audit stream as events are written, and
 * from GitHub API answers. No label names a person or a task; only the spend gauges name a
 * repository and its organisation, since spend per repository is what they are for.
 */
export class AirlockMetrics {
  readonly registry = new Registry();
  readonly #phases: Histogram<'phase'>;
  readonly #vmBoots: Counter<'accelerator'>;
  readonly #vmBootSeconds: Histogram<'accelerator'>;
  readonly #proxyRefusals: Counter<'channel'>;
  readonly #githubErrors: Counter<'status'>;
  readonly #auditEvents: Counter<'type'>;
  /** Where each unfinished task is, and since when (epoch ms), to time its phases. */
  readonly #inPhase = new Map<string, { phase: string; since: number }>();

  constructor(store: Store, options: { processMetrics?: boolean } = {}) {
    const registers = [this.registry];
    if (options.processMetrics ?? true)
      collectDefaultMetrics({ register: this.registry, prefix: 'airlock_' });
    // Read at scrape time, through the store's current connection.
    const byState = () =>
      store.db
        .selectFrom('tasks')
        .select(['state', (eb) => eb.fn.countAll<number>().as('n')])
        .groupBy('state')
        .execute();
    const byOutcome = () => {
      const outcome = jsonText(store.dialect, 'result_json', 'outcome');
      return store.db
        .selectFrom('tasks')
        .select(['state', (eb) => eb.fn.coalesce(outcome, eb.val('none')).as('outcome')])
        .select((eb) => eb.fn.countAll<number>().as('n'))
        .where('finished_at', 'is not', null)
        .groupBy(['state', outcome])
        .execute();
    };
    new Gauge({
      name: 'airlock_tasks',
      help: 'Tasks by current state.',
      labelNames: ['state'],
      registers,
      async collect() {
        const rows = await byState();
        this.reset();
        for (const r of rows) this.set({ state: r.state }, Number(r.n));
      },
    });
    new Gauge({
      name: 'airlock_tasks_finished',
      help: 'Finished tasks by final state and outcome (changes_pushed, no_changes, ...; none when the task failed before one).',
      labelNames: ['state', 'outcome'],
      registers,
      async collect() {
        const rows = await byOutcome();
        this.reset();
        for (const r of rows) this.set({ state: r.state, outcome: String(r.outcome) }, Number(r.n));
      },
    });
    const spend = () =>
      store.db
        .selectFrom('task_spend')
        .select((eb) => [
          'owner',
          'repo_full_name as repo',
          'month',
          eb.fn.sum<number>('input_tokens').as('input'),
          eb.fn.sum<number>('output_tokens').as('output'),
          eb.fn.coalesce(eb.fn.sum<number>('cost_usd'), eb.lit(0)).as('cost'),
        ])
        .groupBy(['owner', 'repo_full_name', 'month'])
        .execute();
    new Gauge({
      name: 'airlock_spend_usd',
      help: 'What model calls cost, in US dollars at the policy’s prices, by organisation, repository and UTC month.',
      labelNames: ['org', 'repository', 'month'],
      registers,
      async collect() {
        const rows = await spend();
        this.reset();
        for (const r of rows) this.set({ org: r.owner, repository: r.repo, month: r.month }, Number(r.cost));
      },
    });
    new Gauge({
      name: 'airlock_spend_tokens',
      help: 'Model tokens used, by organisation, repository, UTC month and direction (input, output).',
      labelNames: ['org', 'repository', 'month', 'direction'],
      registers,
      async collect() {
        const rows = await spend();
        this.reset();
        for (const r of rows) {
          const labels = { org: r.owner, repository: r.repo, month: r.month };
          this.set({ ...labels, direction: 'input' }, Number(r.input));
          this.set({ ...labels, direction: 'output' }, Number(r.output));
        }
      },
    });
    this.#phases = new Histogram({
      name: 'airlock_task_phase_seconds',
      help: 'Time tasks spent in each phase (queued, starting, running, pushing), observed when the phase ends.',
      labelNames: ['phase'],
      buckets: PHASE_BUCKETS_S,
      registers,
    });
    this.#vmBoots = new Counter({
      name: 'airlock_vm_boots_total',
      help: 'microVMs booted for tasks, by accelerator.',
      labelNames: ['accelerator'],
      registers,
    });
    this.#vmBootSeconds = new Histogram({
      name: 'airlock_vm_boot_seconds',
      help: 'Time from starting a task VM to its guest agent answering.',
      labelNames: ['accelerator'],
      buckets: BOOT_BUCKETS_S,
      registers,
    });
    this.#proxyRefusals = new Counter({
      name: 'airlock_proxy_refusals_total',
      help: 'Requests the credential proxy refused, by channel (git, ref_update, egress, model, budget).',
      labelNames: ['channel'],
      registers,
    });
    this.#githubErrors = new Counter({
      name: 'airlock_github_api_errors_total',
      help: 'GitHub API answers of 400 or more (each retry counts), and requests that got no answer (status "network").',
      labelNames: ['status'],
      registers,
    });
    this.#auditEvents = new Counter({
      name: 'airlock_audit_events_total',
      help: 'Audit events appended, by type.',
      labelNames: ['type'],
      registers,
    });
  }

  /** Counts one audit event; subscribe this to the audit log. */
  observeAuditEvent(event: AuditEvent): void {
    this.#auditEvents.inc({ type: event.type });
    const d = event.data;
    const at = Date.parse(event.ts);
    switch (event.type) {
      case 'task.created':
        this.#inPhase.set(event.taskId, { phase: 'queued', since: at });
        break;
      case 'task.state': {
        const state = String(d.state);
        const previous = this.#inPhase.get(event.taskId);
        if (previous && previous.phase !== state) {
          this.#phases.observe({ phase: previous.phase }, Math.max(0, at - previous.since) / 1000);
        }
        if (['queued', 'starting', 'running', 'pushing'].includes(state)) {
          if (previous?.phase !== state) this.#inPhase.set(event.taskId, { phase: state, since: at });
        } else {
          this.#inPhase.delete(event.taskId);
        }
        break;
      }
      case 'vm.created': {
        const accelerator = String(d.accelerator ?? 'unknown');
        this.#vmBoots.inc({ accelerator });
        if (typeof d.bootMs === 'number') this.#vmBootSeconds.observe({ accelerator }, d.bootMs / 1000);
        break;
      }
      case 'proxy.refused':
        this.#proxyRefusals.inc({ channel: d.provider ? 'model' : 'other' });
        break;
      case 'proxy.budget_exceeded':
        this.#proxyRefusals.inc({ channel: 'budget' });
        break;
      case 'proxy.git':
      case 'proxy.egress':
      case 'git.ref_update':
        if (d.decision === 'refused') {
          const channel =
            event.type === 'proxy.git' ? 'git' : event.type === 'proxy.egress' ? 'egress' : 'ref_update';
          this.#proxyRefusals.inc({ channel });
        }
        break;
    }
  }

  /** Wraps a fetch so GitHub API failures are counted (for Octokit's `request.fetch` and OAuth). */
  countGitHubErrors(inner: typeof fetch = fetch): typeof fetch {
    return async (input, init) => {
      try {
        const response = await inner(input, init);
        if (response.status >= 400) this.#githubErrors.inc({ status: String(response.status) });
        return response;
      } catch (error) {
        this.#githubErrors.inc({ status: 'network' });
        throw error;
      }
    };
  }

  /** The exposition text for /metrics. */
  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
