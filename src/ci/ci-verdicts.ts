import { z } from 'zod';
import type { Clock } from '../clock.ts';
import type { Db } from '../store/database.ts';

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
  readonly #db: Db;
  readonly #clock: Clock;

  constructor(db: Db, clock: Clock) {
    this.#db = db;
    this.#clock = clock;
  }

  /** The verdict on a commit, if it was judged. */
  find(repoFullName: string, headSha: string): CiVerdict | undefined {
    const row = this.#db
      .prepare('SELECT * FROM ci_verdicts WHERE repo_full_name = ? AND head_sha = ?')
      .get(repoFullName, headSha);
    return row ? rowToVerdict(row) : undefined;
  }

  /** The newest verdict on a commit a task pushed (for its tracking comment). */
  forTask(taskId: string): CiVerdict | undefined {
    const row = this.#db
      .prepare('SELECT * FROM ci_verdicts WHERE task_id = ? ORDER BY decided_at DESC LIMIT 1')
      .get(taskId);
    return row ? rowToVerdict(row) : undefined;
  }

  /**
   * Stores a verdict. A commit judged `failed` may later be judged `passed` (a person re-ran a flaky
   * check); nothing else overwrites a verdict. Returns whether the row was written.
   */
  record(input: Omit<CiVerdict, 'decidedAt'>): boolean {
    const result = this.#db
      .prepare(
        `INSERT INTO ci_verdicts (repo_full_name, branch, head_sha, task_id, verdict, action, fingerprint, detail_json, decided_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (repo_full_name, head_sha) DO UPDATE SET
           verdict = excluded.verdict, action = excluded.action, fingerprint = excluded.fingerprint,
           detail_json = excluded.detail_json, decided_at = excluded.decided_at
         WHERE ci_verdicts.verdict = 'failed' AND excluded.verdict = 'passed'`,
      )
      .run(
        input.repoFullName,
        input.branch,
        input.headSha,
        input.taskId,
        input.verdict,
        input.action,
        input.fingerprint,
        JSON.stringify(input.detail),
        this.#clock.now().toISOString(),
      );
    return result.changes === 1;
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
