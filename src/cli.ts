#!/usr/bin/env -S node --initial-old-space-size=64 --external-memory-accounted-in-global-limit
// airlock's command line: thin dispatch to the parts; no logic here.
import { AirlockError, errorMessage } from './errors.ts';

type Command = (args: string[]) => Promise<number>;

/** One command: how it is called, what it does (first line is its summary), where it lives. */
interface CommandEntry {
  usage: string;
  about: string;
  load: () => Promise<{ default: Command }>;
}

// Adding a command is one entry here; modules load only when their command runs.
const commands: Record<string, CommandEntry> = {
  run: {
    usage: 'airlock run <repo-path> --prompt "..." [--agent claude|codex|opencode|script] [--script path]',
    about: `run one task against a local git repository, no GitHub
The agent works in a microVM on a copy of the repository; its result is a branch in <repo-path>
and an audit record in AIRLOCK_DATA_DIR. Exits 0 only when the task succeeded.
  --prompt   what the agent should do (required)
  --agent    which agent runs (default: the repository's .github/airlock.yml, else claude)
  --script   a shell script to run instead of an agent (with --agent script)`,
    load: () => import('./cli/run-command.ts'),
  },
  worker: {
    usage: 'airlock worker',
    about: `run a worker: lease queued tasks from PostgreSQL and run them in microVMs on this host
As npm start with AIRLOCK_ROLE=worker. Needs DATABASE_URL, AIRLOCK_CONTROL_URL and
AIRLOCK_WORKER_SECRET, and never the GitHub App's key (docs/deploy.md). Stops on SIGTERM.`,
    load: () => import('./cli/role-commands.ts').then((m) => ({ default: m.worker })),
  },
  control: {
    usage: 'airlock control',
    about: `run a control plane: webhooks, intake, GitHub jobs, web UI and the workers' internal API
As npm start with AIRLOCK_ROLE=control; run any number behind a load balancer on one DATABASE_URL
(docs/deploy.md). Stops on SIGTERM.`,
    load: () => import('./cli/role-commands.ts').then((m) => ({ default: m.control })),
  },
  'image build': {
    usage: 'airlock image build [--force]',
    about: `build (or reuse) the microVM image
The image is cached in AIRLOCK_CACHE_DIR under a digest of its recipe.
  --force    build again even when a cached image matches`,
    load: () => import('./cli/image-build-command.ts'),
  },
  'audit verify': {
    usage: 'airlock audit verify [task-id]',
    about: `check the audit hash chains, saying where one breaks
Reads the database in AIRLOCK_DATA_DIR without changing it. Exits 1 when a chain is broken or the
task does not exist.`,
    load: () => import('./cli/audit-verify-command.ts'),
  },
  'audit export': {
    usage: 'airlock audit export <task-id> [--format json|jsonl]',
    about: `write a task's record (task, chain state, events) to stdout
Reads the database in AIRLOCK_DATA_DIR without changing it.
  --format   json (default: one document with the chain's verification) or jsonl (one event a line)`,
    load: () => import('./cli/audit-export-command.ts'),
  },
  'audit purge': {
    usage:
      'airlock audit purge --older-than <days> --reason "..." [--task id] [--repo owner/name] [--operator who] [--dry-run]',
    about: `delete kept prompt and model-response text of finished tasks, recording the purge in each task's chain
  --older-than  finished at least this many days ago (30 or 30d; 0 for any finished task)
  --reason      why, recorded in each purged task's chain (required unless --dry-run)
  --task        only this task
  --repo        only tasks of this repository (owner/name)
  --operator    who purges (default: your user name)
  --dry-run     say what would be purged, change nothing`,
    load: () => import('./cli/audit-purge-command.ts'),
  },
  'policy check': {
    usage: 'airlock policy check <file> [--repo owner/name]',
    about: `validate an operator policy file (AIRLOCK_POLICY) and print the rules in force
  --repo  the rules for this repository (owner/name) instead of the defaults
The AIRLOCK_MAX_* variables of this environment are applied as they would be at start.`,
    load: () => import('./cli/policy-check-command.ts'),
  },
  'config check': {
    usage: 'airlock config check <file>',
    about: `validate a .github/airlock.yml
Exits 1 and names each invalid field when the file is not valid.`,
    load: () => import('./cli/config-check-command.ts'),
  },
  'config schema': {
    usage: 'airlock config schema',
    about: `print the JSON Schema of .github/airlock.yml
Point your editor's YAML support at it for completion and checking.`,
    load: () => import('./cli/config-schema-command.ts'),
  },
};

const HELP_FLAGS = new Set(['--help', '-h']);

function usage(names: string[] = Object.keys(commands)): string {
  const lines = names.map((name) => {
    const entry = commands[name]!;
    return `  ${entry.usage}\n      ${entry.about.split('\n')[0]}`;
  });
  return `usage: airlock <command> [--help]\n\n${lines.join('\n')}\n`;
}

function commandHelp(name: string): string {
  const entry = commands[name]!;
  return `usage: ${entry.usage}\n\n${entry.about}\n`;
}

/** The commands under a group word such as `audit`. */
function groupMembers(word: string): string[] {
  return Object.keys(commands).filter((name) => name.startsWith(`${word} `));
}

async function main(argv: string[]): Promise<number> {
  // Command words are the leading arguments before any option, so option values are never taken
  // for a command.
  const end = argv.findIndex((arg) => arg.startsWith('-'));
  const words = argv.slice(0, end === -1 ? argv.length : end);
  const wantsHelp = argv
    .slice(0, argv.includes('--') ? argv.indexOf('--') : argv.length)
    .some((a) => HELP_FLAGS.has(a));

  if (words[0] === 'help') return help(words.slice(1));
  if (words.length === 0) {
    if (wantsHelp) return print(usage());
    process.stderr.write(usage());
    return 2;
  }
  const name = [words.slice(0, 2).join(' '), words[0]!].find((n) => commands[n]);
  if (name) {
    if (wantsHelp) return print(commandHelp(name));
    const command = (await commands[name]!.load()).default;
    return command(argv.slice(name.split(' ').length));
  }
  const members = groupMembers(words[0]!);
  if (members.length && words.length === 1) {
    if (wantsHelp) return print(usage(members));
    throw new AirlockError('usage', `airlock ${words[0]} needs a command:\n\n${usage(members)}`);
  }
  throw new AirlockError(
    'usage',
    `unknown command: ${words.slice(0, members.length ? 2 : 1).join(' ')}\n\n${usage(members.length ? members : undefined)}`,
  );
}

function help(words: string[]): number {
  if (words.length === 0) return print(usage());
  const name = words.join(' ');
  if (commands[name]) return print(commandHelp(name));
  const members = groupMembers(name);
  if (members.length) return print(usage(members));
  throw new AirlockError('usage', `unknown command: ${name}\n\n${usage()}`);
}

function print(text: string): number {
  process.stdout.write(text);
  return 0;
}

/** An option the command does not know, or a missing option value, as node:util reports it. */
function isParseArgsError(error: unknown): error is Error {
  return error instanceof Error && String((error as { code?: unknown }).code).startsWith('ERR_PARSE_ARGS');
}

const argv = process.argv.slice(2);
main(argv).then(
  (code) => process.exit(code),
  (error: unknown) => {
    if (isParseArgsError(error)) {
      const words = argv.filter((a) => !a.startsWith('-')).slice(0, 2);
      const name = [words.join(' '), words[0]].find((n) => n && commands[n]) ?? '<command>';
      process.stderr.write(`airlock: ${error.message}\n(see: airlock ${name} --help)\n`);
      process.exit(2);
    }
    process.stderr.write(`airlock: ${errorMessage(error)}\n`);
    process.exit(error instanceof AirlockError && error.code === 'usage' ? 2 : 1);
  },
);
