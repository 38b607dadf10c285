import { createHash } from 'node:crypto';
import type { Store } from '../store/database.ts';
import type { ChainProblem } from './verify-chain.ts';

interface ApprovalRow {
  id: number;
  task_id: string;
  gate: string;
  state: string;
  shown_json: string;
  shown_digest: string;
  decided_by: string | null;
  decided_by_id: number | null;
  channel: string | null;
}

interface ApprovalEvent {
  seq: number;
  type: string;
  data: Record<string, unknown>;
}

/**
 * Checks the approvals against the task chains that record them (call after the chains verify):
 * what each approver was shown still has the digest the chain recorded when approval was asked;
 * every decision the table holds is the one the chain recorded (who, which way, through which
 * channel, on which digest); and every push the host made of a held result follows an approval
 * of that push in the same chain.
 */
export async function verifyApprovals(store: Store, taskId?: string): Promise<ChainProblem[]> {
  const problems: ChainProblem[] = [];
  const rows: ApprovalRow[] = await store.db
    .selectFrom('approvals')
    .select([
      'id',
      'task_id',
      'gate',
      'state',
      'shown_json',
      'shown_digest',
      'decided_by',
      'decided_by_id',
      'channel',
    ])
    .$if(taskId !== undefined, (q) => q.where('task_id', '=', taskId!))
    .orderBy('task_id')
    .orderBy('id')
    .execute();
  const byTask = new Map<string, ApprovalRow[]>();
  for (const row of rows) byTask.set(row.task_id, [...(byTask.get(row.task_id) ?? []), row]);
  const pushers = taskId
    ? []
    : await store.db
        .selectFrom('audit_events')
        .select('task_id')
        .distinct()
        .where('type', '=', 'git.ref_update')
        .execute();
  const tasks = taskId ? [taskId] : [...new Set([...byTask.keys(), ...pushers.map((r) => r.task_id)])];
  for (const task of tasks) {
    const events = (
      await store.db
        .selectFrom('audit_events')
        .select(['seq', 'type', 'data_json'])
        .where('task_id', '=', task)
        .where('type', 'in', ['approval.requested', 'approval.decided', 'git.ref_update'])
        .orderBy('seq')
        .execute()
    ).map((e): ApprovalEvent => ({ seq: e.seq, type: e.type, data: JSON.parse(e.data_json) }));
    const fail = (seq: number, problem: string) => problems.push({ taskId: task, seq, problem });
    for (const row of byTask.get(task) ?? []) {
      const requested = events.find((e) => e.type === 'approval.requested' && e.data.approval === row.id);
      if (!requested) {
        fail(0, `approval ${row.id} (${row.gate}) is not in the task's record`);
        continue;
      }
      const digest = createHash('sha256').update(row.shown_json).digest('hex');
      if (digest !== row.shown_digest || requested.data.shownDigest !== row.shown_digest)
        fail(requested.seq, `what approval ${row.id} showed was changed after it was recorded`);
      if (row.state === 'pending' || row.state === 'withdrawn') continue;
      const decided = events.find((e) => e.type === 'approval.decided' && e.data.approval === row.id);
      const by = decided?.data.by as { login?: unknown; id?: unknown } | null | undefined;
      if (!decided) fail(0, `approval ${row.id} is ${row.state}, and the task's record holds no decision`);
      else if (
        decided.data.decision !== row.state ||
        decided.data.channel !== row.channel ||
        decided.data.shownDigest !== row.shown_digest ||
        (by?.login ?? null) !== row.decided_by ||
        (by?.id ?? null) !== row.decided_by_id
      )
        fail(decided.seq, `approval ${row.id} does not match the decision the task's record holds`);
    }
    // A push the host made must follow an approval of that push, earlier in the same chain.
    for (const push of events.filter((e) => e.type === 'git.ref_update' && e.data.by === 'host')) {
      const approved = events.find(
        (e) =>
          e.type === 'approval.decided' &&
          e.seq < push.seq &&
          e.data.approval === push.data.approval &&
          e.data.gate === 'push' &&
          e.data.decision === 'approved',
      );
      if (!approved)
        fail(push.seq, `event ${push.seq} pushes a held result that no recorded approval allowed`);
    }
  }
  return problems;
}
