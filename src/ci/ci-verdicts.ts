import { z } from 'zod';
import type { Clock } from '../clock.ts';
import type { Store } from '../store/database.ts';

/** CI's verdict on one head commit of an agent branch, and what airlock did about it. */
export const CiVerdict = z.object({
  repoFullName: z.string(),
  branch: z.string(),
  headSha: z.string(),
  taskId: z.string(),
  verdict: z.enum(['passed', 'failed']),
  /** What airlock did, in words for the tracking comment ("marked ready for review", ...). */
  action: z.string(),
  fingerprint: z.string().nullable(),
  detail: z.record(z.string(), z.unknown()),
  decidedAt: z.string(),
});
export type CiVerdict = z.infer<typeof CiVerdict>;

/** Verdicts stored one per head commit, so the many completion events of one CI run act once. */
export class CiVerdicts {
  readonly #store: Store;
  readonly #clock: Clock;

  constructor(store: Store, clock: Clock) {
    this.#store = store;
    this.#clock = clock;
  }

  /** The verdict on a commit, if it was judged. */
  async find(repoFullName: string, headSha: string): Promise<CiVerdict | undefined> {
    const row = await this.#store.db
      .selectFrom('ci_verdicts')
      .selectAll()
      .where('repo_full_name', '=', repoFullName)
      .where('head_sha', '=', headSha)
      .executeTakeFirst();
    return row ? rowToVerdict(row) : undefined;
  }

  /** The newest verdict on a commit a task pushed (for its tracking comment). */
  async forTask(taskId: string): Promise<CiVerdict | undefined> {
    const row = await this.#store.db
      .selectFrom('ci_verdicts')
      .selectAll()
      .where('task_id', '=', taskId)
      .orderBy('decided_at', 'desc')
      .limit(1)
      .executeTakeFirst();
    return row ? rowToVerdict(row) : undefined;
  }

  /**
   * Stores a verdict. A commit judged `failed` may later be judged `passed` (a person re-ran a flaky
   * check); nothing else overwrites a verdict. Returns whether the row was written: one statement,
   * so of two processes judging one commit at once, one writes and the other learns it did not.
   */
  async record(input: Omit<CiVerdict, 'decidedAt'>): Promise<boolean> {
    const result = await this.#store.db
      .insertInto('ci_verdicts')
      .values({
        repo_full_name: input.repoFullName,
        branch: input.branch,
        head_sha: input.headSha,
        task_id: input.taskId,
        verdict: input.verdict,
        action: input.action,
        fingerprint: input.fingerprint,
        detail_json: JSON.stringify(input.detail),
        decided_at: this.#clock.now().toISOString(),
      })
      .onConflict((oc) =>
        oc
          .columns(['repo_full_name', 'head_sha'])
          .doUpdateSet((eb) => ({
            verdict: eb.ref('excluded.verdict'),
            action: eb.ref('excluded.action'),
            fingerprint: eb.ref('excluded.fingerprint'),
            detail_json: eb.ref('excluded.detail_json'),
            decided_at: eb.ref('excluded.decided_at'),
          }))
          .where('ci_verdicts.verdict', '=', 'failed')
          .where('excluded.verdict', '=', 'passed'),
      )
      .executeTakeFirst();
    return result.numInsertedOrUpdatedRows === 1n;
  }
}

function rowToVerdict(row: unknown): CiVerdict {
  const r = row as Record<string, unknown>;
  return CiVerdict.parse({
    repoFullName: r.repo_full_name,
    branch: r.branch,
    headSha: r.head_sha,
    taskId: r.task_id,
    verdict: r.verdict,
    action: r.action,
    fingerprint: r.fingerprint,
    detail: JSON.parse(String(r.detail_json)),
    decidedAt: r.decided_at,
  });
}
