import { tmpdir } from 'node:os';
import { execa } from 'execa';
import { runProcess } from '../../src/process/run-process.ts';

const GIT_TIMEOUT_MS = 30_000;

/** The environment every emulator git command runs with: no user or system config. */
export function gitEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    HOME: tmpdir(),
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_AUTHOR_NAME: 'Emulator',
    GIT_AUTHOR_EMAIL: 'emulator@example.invalid',
    GIT_COMMITTER_NAME: 'Emulator',
    GIT_COMMITTER_EMAIL: 'emulator@example.invalid',
    GIT_AUTHOR_DATE: '2026-01-01T00:00:00Z',
    GIT_COMMITTER_DATE: '2026-01-01T00:00:00Z',
    ...extra,
  };
}

/** Runs git against a bare repository and returns its stdout as text. */
export async function gitText(
  gitDir: string | undefined,
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; okExitCodes?: number[]; input?: Buffer } = {},
): Promise<string> {
  const result = await runProcess('git', gitDir ? ['--git-dir', gitDir, ...args] : args, {
    env: gitEnv(options.env),
    cwd: options.cwd,
    input: options.input,
    timeoutMs: GIT_TIMEOUT_MS,
    okExitCodes: options.okExitCodes,
  });
  return result.stdout;
}

/** Runs git and returns stdout as bytes (file contents), or undefined when git fails. */
export async function gitBytes(gitDir: string, args: string[]): Promise<Buffer | undefined> {
  const result = await execa('git', ['--git-dir', gitDir, ...args], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...gitEnv() },
    extendEnv: false,
    encoding: 'buffer',
    reject: false,
    timeout: GIT_TIMEOUT_MS,
    stripFinalNewline: false,
  });
  return result.exitCode === 0 ? Buffer.from(result.stdout) : undefined;
}

/** The sha a revision resolves to, or undefined. */
export async function resolveRev(gitDir: string, rev: string): Promise<string | undefined> {
  const out = await gitText(gitDir, ['rev-parse', '--verify', '--quiet', `${rev}^{commit}`], {
    okExitCodes: [0, 1, 128],
  });
  return /^[0-9a-f]{40}$/.test(out.trim()) ? out.trim() : undefined;
}

/** Every ref of a repository with its sha. */
export async function listRefs(gitDir: string): Promise<Map<string, string>> {
  const out = await gitText(gitDir, ['for-each-ref', '--format=%(refname) %(objectname)']);
  return new Map(
    out
      .split('\n')
      .filter(Boolean)
      .map((line) => line.split(' ') as [string, string]),
  );
}
