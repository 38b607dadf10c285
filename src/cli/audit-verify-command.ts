import { parseArgs } from 'node:util';
import { verifyAuditChains } from '../audit/verify-chain.ts';
import { loadAppConfig } from '../config/app-config.ts';
import { AirlockError } from '../errors.ts';
import { databaseName, openAirlockData } from './airlock-data.ts';

/** `airlock audit verify [task-id]`: recomputes the hash chains and says where one breaks. */
export default async function auditVerify(args: string[]): Promise<number> {
  const { positionals } = parseArgs({ args, allowPositionals: true });
  const [taskId, extra] = positionals;
  if (extra) throw new AirlockError('usage', 'airlock audit verify takes at most one task id');
  const config = loadAppConfig(process.env);
  const store = await openAirlockData(config, 'read');
  try {
    const report = await verifyAuditChains(store, taskId);
    // A mistyped id checks nothing; saying "ok" would make the typo look like a verified record.
    if (taskId && report.tasks === 0) {
      throw new AirlockError('not_found', `task ${taskId} has no audit record in ${databaseName(config)}`, {
        hint: 'check the task id (it is in the task page URL and in the output of airlock run)',
      });
    }
    for (const p of report.problems) process.stdout.write(`task ${p.taskId}: ${p.problem}\n`);
    process.stdout.write(
      `${report.ok ? 'ok' : 'BROKEN'}: ${report.tasks} task(s), ${report.events} event(s) checked, ${report.problems.length} chain(s) broken\n`,
    );
    return report.ok ? 0 : 1;
  } finally {
    await store.close();
  }
}
