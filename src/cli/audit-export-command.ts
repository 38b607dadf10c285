import { parseArgs } from 'node:util';
import { taskRecordJson, taskRecordJsonl } from '../audit/audit-export.ts';
import { AuditLog } from '../audit/audit-log.ts';
import { verifyAuditChains } from '../audit/verify-chain.ts';
import { systemClock } from '../clock.ts';
import { loadAppConfig } from '../config/app-config.ts';
import { AirlockError } from '../errors.ts';
import { SecretRedactor } from '../secrets.ts';
import { ALL_REPOS } from '../web/repo-access.ts';
import { TaskQuery } from '../web/task-query.ts';
import { databaseName, openAirlockData } from './airlock-data.ts';

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
  const store = await openAirlockData(config, 'read');
  try {
    const task = await new TaskQuery(store).find(ALL_REPOS, taskId);
    if (!task)
      throw new AirlockError('not_found', `task ${taskId} does not exist in ${databaseName(config)}`, {
        hint: 'check the task id (it is in the task page URL and in the output of airlock run)',
      });
    const events = await new AuditLog(store, systemClock, new SecretRedactor()).events(taskId);
    process.stdout.write(
      values.format === 'json'
        ? taskRecordJson(task, events, await verifyAuditChains(store, taskId))
        : taskRecordJsonl(events),
    );
    return 0;
  } finally {
    await store.close();
  }
}
