import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadAppConfig } from '../config/app-config.ts';
import { RepoConfig } from '../config/repo-config.ts';
import { AirlockError } from '../errors.ts';
import { runLocalTask } from '../local/local-run.ts';
import { createLogger } from '../logger.ts';
import { openSandbox } from '../sandbox/open-sandbox.ts';
import { SecretRedactor } from '../secrets.ts';

const USAGE = 'airlock run <repo-path> --prompt "..." [--agent claude|codex|opencode|script] [--script path]';

/**
 * `airlock run`: one task against a local git repository, no GitHub. Prints progress, the branch
 * the result is on and where the audit record is; exits 0 only when the task succeeded.
 */
export default async function run(args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      prompt: { type: 'string' },
      agent: { type: 'string' },
      script: { type: 'string' },
    },
  });
  const [repoPath] = positionals;
  if (!repoPath || !values.prompt?.trim()) throw new AirlockError('usage', `usage: ${USAGE}`);
  const agents = RepoConfig.shape.agent.removeDefault().options as readonly string[];
  if (values.agent && !agents.includes(values.agent))
    throw new AirlockError('usage', `--agent must be one of ${agents.join(', ')} (got ${values.agent})`);

  const config = loadAppConfig(process.env);
  const redactor = new SecretRedactor();
  for (const key of [config.models.anthropicApiKey, config.models.openaiApiKey]) if (key) redactor.add(key);
  // Logs go to stderr at warn and above: progress lines are the interface here.
  const log = createLogger({
    level: process.env.LOG_LEVEL ?? 'warn',
    format: config.logFormat,
    redactor,
    destination: process.stderr,
  });
  const progress = (line: string) => process.stderr.write(`airlock: ${line}\n`);
  const sandbox = async () => {
    const opened = await openSandbox({
      cacheDir: config.cacheDir,
      dataDir: config.dataDir,
      accel: config.accel,
      snapshots: config.snapshots,
      log,
    });
    progress(`sandbox: ${opened.accel.accel} (${opened.accel.reason})`);
    return opened;
  };
  const interrupt = new AbortController();
  process.once('SIGINT', () => {
    progress('cancelling: destroying the VM and closing the proxy');
    interrupt.abort();
  });
  const outcome = await runLocalTask(
    {
      repoPath: path.resolve(repoPath),
      prompt: values.prompt,
      ...(values.agent ? { agent: values.agent as RepoConfig['agent'] } : {}),
      ...(values.script ? { script: values.script } : {}),
    },
    { config, log, redactor, openSandbox: sandbox, progress, signal: interrupt.signal },
  );
  const { task } = outcome;
  // A succeeded task's reason is its outcome, which the lines below spell out.
  const why = task.state !== 'succeeded' && task.reason ? ` (${task.reason})` : '';
  const lines = [`task ${task.id}: ${task.state}${why}`];
  if (task.result?.outcome === 'changes_pushed') {
    lines.push(`branch: ${task.branch} (${task.result.headSha?.slice(0, 12)})`);
    if (task.result.diffStat) lines.push(task.result.diffStat);
  }
  lines.push(`audit record: ${outcome.recordFile}`);
  lines.push(`  (task ${task.id} in ${outcome.database}; check it with: airlock audit verify ${task.id})`);
  process.stdout.write(`${lines.join('\n')}\n`);
  return task.state === 'succeeded' ? 0 : 1;
}
