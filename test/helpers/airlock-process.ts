import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { NODE_FLAGS } from '../../src/process/node-flags.ts';
import { waitFor } from './wait-for.ts';

const MAIN = fileURLToPath(new URL('../../src/main.ts', import.meta.url));
const CLI = fileURLToPath(new URL('../../src/cli.ts', import.meta.url));

/** airlock as `npm start` runs it: src/main.ts in a process of its own, settings from its environment. */
export interface AirlockProcess {
  child: ChildProcess;
  /** What it printed so far (stdout and stderr). */
  output(): string;
  /** Its exit code, or the signal that ended it. */
  exited: Promise<number | NodeJS.Signals | null>;
}

/** A TCP port free on 127.0.0.1 now. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * Starts src/main.ts (or, with `command`, `airlock <command>` from src/cli.ts) with exactly `env`
 * (and PATH), in `cwd`; resolves once it logs that it is running, and fails with its output if it
 * exits or has not started in `timeoutMs`.
 */
export async function startAirlockProcess(
  env: Record<string, string>,
  options: { cwd: string; timeoutMs?: number; command?: 'worker' | 'control' },
): Promise<AirlockProcess> {
  const entry = options.command ? [CLI, options.command] : [MAIN];
  const child = spawn(process.execPath, [...NODE_FLAGS, ...entry], {
    cwd: options.cwd,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => {
    output += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => {
    output += d.toString();
  });
  const exited = new Promise<number | NodeJS.Signals | null>((resolve) =>
    child.once('exit', (code, signal) => resolve(signal ?? code)),
  );
  let gone: number | NodeJS.Signals | null | undefined;
  void exited.then((how) => {
    gone = how;
  });
  await waitFor(
    () => {
      if (gone !== undefined) throw new Error(`airlock exited (${gone}) before it was running:\n${output}`);
      return output.includes('airlock is running');
    },
    options.timeoutMs ?? 120_000,
    'airlock to start',
  ).catch((error) => {
    child.kill('SIGKILL');
    throw new Error(`${(error as Error).message}; it printed:\n${output.slice(-4000)}`, { cause: error });
  });
  return { child, output: () => output, exited };
}
