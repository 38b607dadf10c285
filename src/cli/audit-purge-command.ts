import { userInfo } from 'node:os';
import { parseArgs } from 'node:util';
import { AuditLog } from '../audit/audit-log.ts';
import { purgeConversation } from '../audit/retention.ts';
import { systemClock } from '../clock.ts';
import { loadAppConfig } from '../config/app-config.ts';
import { AirlockError } from '../errors.ts';
import { SecretRedactor } from '../secrets.ts';
import { openAirlockData } from './airlock-data.ts';

/**
 * `airlock audit purge --older-than <days> --reason <text> [--task id] [--repo owner/name] [--dry-run]`:
 * deletes the kept prompt and model-response text of finished tasks, recording the purge in each
 * task's chain first.
 */
export default async function auditPurge(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      'older-than': { type: 'string' },
      reason: { type: 'string' },
      task: { type: 'string' },
      repo: { type: 'string' },
      operator: { type: 'string' },
      'dry-run': { type: 'boolean', default: false },
    },
  });
  const days = /^(\d+)d?$/.exec(values['older-than'] ?? '');
  if (!days) {
    throw new AirlockError(
      'usage',
      '--older-than is required: a number of days such as 30 or 30d (0 for any finished task)',
    );
  }
  if (!values.reason && !values['dry-run']) {
    throw new AirlockError(
      'usage',
      '--reason is required: it is recorded in the audit chain of every task purged',
    );
  }
  const config = loadAppConfig(process.env);
  const store = await openAirlockData(config, 'write');
  try {
    const audit = new AuditLog(store, systemClock, new SecretRedactor());
    const report = await purgeConversation(
      { store, audit, clock: systemClock },
      {
        olderThanDays: Number(days[1]),
        reason: values.reason ?? '',
        operator: values.operator ?? `${userInfo().username} (airlock audit purge)`,
        dryRun: values['dry-run'],
        ...(values.task ? { taskId: values.task } : {}),
        ...(values.repo ? { repoFullName: values.repo } : {}),
      },
    );
    const verb = report.dryRun ? 'would purge' : 'purged';
    for (const id of report.tasks) process.stdout.write(`task ${id}\n`);
    process.stdout.write(
      `${verb} ${report.payloads} text(s), ${report.bytes} byte(s), from ${report.tasks.length} task(s)\n`,
    );
    return 0;
  } finally {
    await store.close();
  }
}
