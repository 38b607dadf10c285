import { parseArgs } from 'node:util';
import { taskRecordJson, taskRecordJsonl } from '../audit/audit-export.ts';
import { AuditLog } from '../audit/audit-log.ts';
import { verifyAuditChains } from '../audit/verify-chain.ts';
import { systemClock } from '../clock.ts';
import { loadAppConfig } from '../config/app-config.ts';
import { AirlockError } from '../errors.ts';
import { SecretRedactor } from '../secrets.ts';
import { openSqliteStore } from '../store/database.ts';
import { TaskStore } from '../tasks/task-store.ts';
import { databaseFile, openAirlockData } from './airlock-data.ts';

/** `airlock audit export <task-id> [--format json|jsonl]`: writes a task's record to stdout. */
export default async function auditExport(args: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args,
    allowPositionals: true,
    options: { format: { type: 'string', default: 'json' } },
  });
  const [taskId, extra] = positionals;
  if (!taskId || extra) throw new AirlockError('usage', 'airlock audit export needs one task id');
  if (values.format !== 'json' && values.format !== 'jsonl') {
    throw new AirlockError('usage', `--format must be json or jsonl, not ${values.format}`);
  }
  const config = loadAppConfig(process.env);
  const db = openAirlockData(config.dataDir, 'read');
  try {
    const task = await new TaskStore(openSqliteStore(db), systemClock).find(taskId);
    if (!task)
      throw new AirlockError(
        'not_found',
        `task ${taskId} does not exist in ${databaseFile(config.dataDir)}`,
        {
          hint: 'check the task id (it is in the task page URL and in the output of airlock run)',
        },
      );
    const events = new AuditLog(db, systemClock, new SecretRedactor()).events(taskId);
    process.stdout.write(
      values.format === 'json'
        ? taskRecordJson(task, events, verifyAuditChains(db, taskId))
        : taskRecordJsonl(events),
    );
    return 0;
  } finally {
    db.close();
  }
}
