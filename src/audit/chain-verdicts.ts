import type { Clock } from '../clock.ts';
import type { AuditLog } from './audit-log.ts';
import type { ChainProblem } from './verify-chain.ts';

/** What a task's chain says about itself, for a badge. */
export interface ChainVerdict {
  /** `verified`: every event recomputes and links; `broken`: one does not; `empty`: no events. */
  state: 'verified' | 'broken' | 'empty';
  events: number;
  headHash: string | undefined;
  /** Where the chain first breaks. */
  problem: ChainProblem | undefined;
  /** Events that say the exec audit (the record of processes run in the VM) has a gap. */
  execAuditGaps: Array<{ seq: number; type: string }>;
  /** When the chain was last recomputed (ISO). */
  checkedAt: string;
}

/** Whether an event type says the exec audit may have missed processes. */
export function isExecAuditGapType(type: string): boolean {
  return type.startsWith('vm.exec_audit') || type === 'vm.malformed_output';
}

/**
 * Verdicts on tasks' chains for the pages, cached by chain head: a chain that has not grown is
 * not recomputed for every list page, only once `maxAgeMs` has passed (so a change made to the
 * database behind airlock's back still shows within that time; `airlock audit verify` always
 * recomputes). A growing chain (a running task's page re-rendered live) is recomputed at most
 * every `growingMs`: until then its verdict covers the head it was computed at.
 */
export class ChainVerdicts {
  readonly #audit: Pick<AuditLog, 'head' | 'verify' | 'typeCounts' | 'events'>;
  readonly #clock: Clock;
  readonly #maxAgeMs: number;
  readonly #growingMs: number;
  readonly #cache = new Map<string, ChainVerdict>();

  constructor(
    audit: Pick<AuditLog, 'head' | 'verify' | 'typeCounts' | 'events'>,
    clock: Clock,
    options: { maxAgeMs?: number; growingMs?: number } = {},
  ) {
    this.#audit = audit;
    this.#clock = clock;
    this.#maxAgeMs = options.maxAgeMs ?? 10 * 60_000;
    this.#growingMs = options.growingMs ?? 5_000;
  }

  /** The verdict on one task's chain, recomputed only when its head moved or the answer is old. */
  async of(taskId: string): Promise<ChainVerdict> {
    const head = await this.#audit.head(taskId);
    const now = this.#clock.now();
    const cached = this.#cache.get(taskId);
    const age = cached ? now.getTime() - Date.parse(cached.checkedAt) : Number.POSITIVE_INFINITY;
    if (cached && (age < this.#growingMs || (cached.headHash === head?.hash && age < this.#maxAgeMs))) {
      return cached;
    }
    const report = await this.#audit.verify(taskId);
    const gapTypes = [...(await this.#audit.typeCounts(taskId)).keys()].filter(isExecAuditGapType);
    const gaps = gapTypes.length
      ? (await this.#audit.events(taskId, { limit: 100 }, { types: gapTypes })).map((e) => ({
          seq: e.seq,
          type: e.type,
        }))
      : [];
    const verdict: ChainVerdict = {
      state: !head ? 'empty' : report.ok ? 'verified' : 'broken',
      events: head?.seq ?? 0,
      headHash: head?.hash,
      problem: report.problems[0],
      execAuditGaps: gaps,
      checkedAt: now.toISOString(),
    };
    if (this.#cache.size > 10_000) this.#cache.clear();
    this.#cache.set(taskId, verdict);
    return verdict;
  }
}
