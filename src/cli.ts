#!/usr/bin/env -S node --initial-old-space-size=64 --external-memory-accounted-in-global-limit
// airlock's command line: thin dispatch to the parts; no logic here.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parseRepoConfig, repoConfigJsonSchema } from './config/repo-config.ts';
import { AirlockError, errorMessage } from './errors.ts';

const USAGE = `usage: airlock <command>

  airlock run <repo-path> --prompt "..." [--agent claude|codex|opencode|script] [--script path]
                                    run one task against a local git repository, no GitHub
  airlock image build [--force]     build (or reuse) the microVM image
  airlock audit verify [task-id]    check the audit hash chains, saying where one breaks
  airlock audit export <task-id> [--format json|jsonl]
                                    write a task's record (task, chain state, events) to stdout
  airlock audit purge --older-than <days> --reason "..." [--task id] [--repo owner/name]
                    [--operator who] [--dry-run]
                                    delete kept prompt and model-response text of finished tasks,
                                    recording the purge in each task's chain
  airlock config check <file>       validate a .github/airlock.yml
  airlock config schema             print the JSON Schema of .github/airlock.yml
`;

type Command = (args: string[]) => Promise<number>;

const commands: Record<string, Command> = {
  'config schema': async () => {
    process.stdout.write(`${JSON.stringify(repoConfigJsonSchema(), null, 2)}\n`);
    return 0;
  },
  'config check': async ([file]) => {
    if (!file) throw new AirlockError('usage', 'airlock config check needs a file path');
    parseRepoConfig(readFileSync(file, 'utf8'));
    process.stdout.write(`${file}: valid\n`);
    return 0;
  },
};

/** Registers a command implemented elsewhere (keeps heavy imports out of unrelated commands). */
export function registerCommand(name: string, command: Command): void {
  commands[name] = command;
}

async function main(argv: string[]): Promise<number> {
  const { positionals } = parseArgs({ args: argv, allowPositionals: true, strict: false });
  for (const words of [2, 1]) {
    const name = positionals.slice(0, words).join(' ');
    const command = commands[name] ?? (await lazyCommand(name));
    if (command) return command(argv.slice(argv.indexOf(positionals[words - 1]!) + 1));
  }
  process.stderr.write(USAGE);
  return positionals.length ? 2 : 0;
}

async function lazyCommand(name: string): Promise<Command | undefined> {
  const modules: Record<string, () => Promise<{ default: Command }>> = {
    run: () => import('./cli/run-command.ts'),
    'image build': () => import('./cli/image-build-command.ts'),
    'audit verify': () => import('./cli/audit-verify-command.ts'),
    'audit export': () => import('./cli/audit-export-command.ts'),
    'audit purge': () => import('./cli/audit-purge-command.ts'),
    'policy check': () => import('./cli/policy-check-command.ts'),
  };
  const load = modules[name];
  return load ? (await load()).default : undefined;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`airlock: ${errorMessage(error)}\n`);
    process.exit(error instanceof AirlockError && error.code === 'usage' ? 2 : 1);
  },
);
