import path from 'node:path';
import { verifyAuditChains } from '../audit/verify-chain.ts';
import { loadAppConfig } from '../config/app-config.ts';
import { openDatabase } from '../store/database.ts';

/** `airlock audit verify [task-id]`: recomputes the hash chains and says where one breaks. */
export default async function auditVerify(args: string[]): Promise<number> {
  const config = loadAppConfig(process.env);
  const db = openDatabase(path.join(config.dataDir, 'airlock.sqlite'));
  try {
    const report = verifyAuditChains(db, args[0]);
    for (const p of report.problems) process.stdout.write(`task ${p.taskId}: ${p.problem}\n`);
    process.stdout.write(
      `${report.ok ? 'ok' : 'BROKEN'}: ${report.tasks} task(s), ${report.events} event(s) checked, ${report.problems.length} chain(s) broken\n`,
    );
    return report.ok ? 0 : 1;
  } finally {
    db.close();
  }
}
