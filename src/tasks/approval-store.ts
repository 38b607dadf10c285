import { createHash } from 'node:crypto';
import { z } from 'zod';
import { canonicalJson } from '../audit/audit-event.ts';
import type { Clock } from '../clock.ts';
import { AirlockError } from '../errors.ts';
import type { Store } from '../store/database.ts';
import { IssueThread } from './task-thread.ts';

/** Which gate a task waits at: before it runs, or before its held result is pushed. */
export const ApprovalGate = z.enum(['run', 'push']);
export type ApprovalGate = z.infer<typeof ApprovalGate>;

/** Where an approval was decided: a `/airlock` comment, the web UI, or airlock itself. */
export const ApprovalChannel = z.enum(['comment', 'web', 'expiry', 'cancel']);
export type ApprovalChannel = z.infer<typeof ApprovalChannel>;

/** What a person approving a run is shown: the exact text the agent will get. */
export const RunShown = z
  .object({
    gate: z.literal('run'),
    thread: IssueThread.nullable(),
    instruction: z.string().nullable(),
    /** The authors of that text who have no write access to the repository. */
    untrustedAuthors: z.array(z.string()),
  })
  .strict();
export type RunShown = z.infer<typeof RunShown>;

/** One file a held result changes, from the host's `git diff --numstat`. */
export const ChangedFile = z
  .object({ path: z.string(), added: z.number().nullable(), deleted: z.number().nullable() })
  .strict();
export type ChangedFile = z.infer<typeof ChangedFile>;

/** What a person approving a push is shown: the held result as the host computed it. */
export const PushShown = z
  .object({
    gate: z.literal('push'),
    base: z.string().nullable(),
    head: z.string(),
    diffStat: z.string(),
    files: z.array(ChangedFile),
    /** sha256 of the full patch (the web UI shows it whole; the comment links to it). */
    patchSha256: z.string(),
    /** Commands the VM ran, from the exec audit (first ones, when there are many). */
    commands: z.array(z.string()),
    /** Hosts the proxy let the VM reach beyond git and the model API. */
    hosts: z.array(z.string()),
  })
  .strict();
export type PushShown = z.infer<typeof PushShown>;

export const ApprovalShown = z.discriminatedUnion('gate', [RunShown, PushShown]);
export type ApprovalShown = z.infer<typeof ApprovalShown>;

/** One approval as stored. */
export const Approval = z.object({
  id: z.number(),
  taskId: z.string(),
  gate: ApprovalGate,
  state: z.enum(['pending', 'approved', 'rejected', 'expired', 'withdrawn']),
  why: z.string(),
  shown: ApprovalShown,
  shownDigest: z.string(),
  requestedAt: z.string(),
  expiresAt: z.string(),
  decidedBy: z.string().nullable(),
  decidedById: z.number().nullable(),
  decidedAt: z.string().nullable(),
  channel: ApprovalChannel.nullable(),
  releasedAt: z.string().nullable(),
});
export type Approval = z.infer<typeof Approval>;

/** The digest of what an approver is shown: sha256 over its canonical JSON. */
export function shownDigest(shown: ApprovalShown): string {
  return createHash('sha256').update(canonicalJson(shown)).digest('hex');
}

/** An approval cannot be decided as asked (nothing pending, already decided, changed since seen). */
export class ApprovalError extends AirlockError {
  constructor(message: string, options: { hint?: string } = {}) {
    super('approval', message, options);
  }
}

/** Durable approvals: one pending per task at most, and every decision kept. */
export class ApprovalStore {
  readonly #store: Store;
  readonly #clock: Clock;

  constructor(store: Store, clock: Clock) {
    this.#store = store;
    this.#clock = clock;
  }

  /** Records that a task waits at `gate` for `hours`; returns the pending approval. */
  async request(
    taskId: string,
    gate: ApprovalGate,
    why: string,
    shown: ApprovalShown,
    hours: number,
  ): Promise<Approval> {
    const now = this.#clock.now();
    const expires = new Date(now.getTime() + hours * 3_600_000);
    const row = await this.#store.db
      .insertInto('approvals')
      .values({
        task_id: taskId,
        gate,
        why,
        shown_json: canonicalJson(shown),
        shown_digest: shownDigest(shown),
        requested_at: now.toISOString(),
        expires_at: expires.toISOString(),
      })
      .returningAll()
      .executeTakeFirstOrThrow();
    return rowToApproval(row);
  }

  /** The approval a task waits for, if any. */
  async pending(taskId: string): Promise<Approval | undefined> {
    const row = await this.#approvals()
      .where('task_id', '=', taskId)
      .where('state', '=', 'pending')
      .executeTakeFirst();
    return row ? rowToApproval(row) : undefined;
  }

  /** A task's approvals, oldest first. */
  async forTask(taskId: string): Promise<Approval[]> {
    const rows = await this.#approvals().where('task_id', '=', taskId).orderBy('id').execute();
    return rows.map(rowToApproval);
  }

  /** Every approval, in task order (for `airlock audit verify`). */
  async all(): Promise<Approval[]> {
    const rows = await this.#approvals().orderBy('task_id').orderBy('id').execute();
    return rows.map(rowToApproval);
  }

  /** The approved push a task is released to do, not yet done. */
  async approvedPush(taskId: string): Promise<Approval | undefined> {
    const row = await this.#approvals()
      .where('task_id', '=', taskId)
      .where('gate', '=', 'push')
      .where('state', '=', 'approved')
      .where('released_at', 'is', null)
      .orderBy('id', 'desc')
      .limit(1)
      .executeTakeFirst();
    return row ? rowToApproval(row) : undefined;
  }

  /** Marks an approved push as done, so it is never pushed twice. */
  async released(id: number): Promise<void> {
    await this.#store.db
      .updateTable('approvals')
      .set({ released_at: this.#clock.now().toISOString() })
      .where('id', '=', id)
      .execute();
  }

  /** Pending approvals whose time is up. */
  async expired(): Promise<Approval[]> {
    const rows = await this.#approvals()
      .where('state', '=', 'pending')
      .where('expires_at', '<=', this.#clock.now().toISOString())
      .orderBy('expires_at')
      .execute();
    return rows.map(rowToApproval);
  }

  /** Every pending approval, oldest first. */
  async allPending(): Promise<Approval[]> {
    const rows = await this.#approvals()
      .where('state', '=', 'pending')
      .orderBy('requested_at')
      .orderBy('id')
      .execute();
    return rows.map(rowToApproval);
  }

  /**
   * Settles a pending approval, in one conditional write; throws an ApprovalError when it is no
   * longer pending (another decision, or its task ended, got there first).
   */
  async decide(
    id: number,
    decision: { state: 'approved' | 'rejected' | 'expired' | 'withdrawn'; channel: ApprovalChannel },
    by: { login: string; id: number | null } | null,
  ): Promise<Approval> {
    const row = await this.#store.db
      .updateTable('approvals')
      .set({
        state: decision.state,
        channel: decision.channel,
        decided_by: by?.login ?? null,
        decided_by_id: by?.id ?? null,
        decided_at: this.#clock.now().toISOString(),
      })
      .where('id', '=', id)
      .where('state', '=', 'pending')
      .returningAll()
      .executeTakeFirst();
    if (!row) throw new ApprovalError('this approval was already decided');
    return rowToApproval(row);
  }

  #approvals() {
    return this.#store.db.selectFrom('approvals').selectAll();
  }
}

function rowToApproval(row: unknown): Approval {
  const r = row as Record<string, unknown>;
  return Approval.parse({
    id: r.id,
    taskId: r.task_id,
    gate: r.gate,
    state: r.state,
    why: r.why,
    shown: JSON.parse(String(r.shown_json)),
    shownDigest: r.shown_digest,
    requestedAt: r.requested_at,
    expiresAt: r.expires_at,
    decidedBy: r.decided_by,
    decidedById: r.decided_by_id,
    decidedAt: r.decided_at,
    channel: r.channel,
    releasedAt: r.released_at,
  });
}
