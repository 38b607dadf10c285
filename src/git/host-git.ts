import { type ProcessResult, runProcess } from '../process/run-process.ts';

const GIT_TIMEOUT_MS = 10 * 60_000;

/** How {@link hostGit} runs one git command on the host. */
export interface HostGitOptions {
  /** A token for the upstream: sent as an HTTP header from the environment, never in argv or on disk. */
  auth?: string;
  okExitCodes?: readonly number[];
  signal?: AbortSignal;
  input?: string;
  timeoutMs?: number;
}

/**
 * Runs git on the host: no system or global configuration, no prompt, no home directory; the
 * token (if any) in an `http.extraHeader` set through `GIT_CONFIG_*` in the child's environment
 * (readable only by this user), never on the command line.
 */
export async function hostGit(args: readonly string[], options: HostGitOptions = {}): Promise<ProcessResult> {
  const env: Record<string, string> = {
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_TERMINAL_PROMPT: '0',
    HOME: '/nonexistent',
  };
  if (options.auth) {
    env.GIT_CONFIG_COUNT = '1';
    env.GIT_CONFIG_KEY_0 = 'http.extraHeader';
    env.GIT_CONFIG_VALUE_0 = `Authorization: Basic ${Buffer.from(`x-access-token:${options.auth}`).toString('base64')}`;
  }
  return runProcess('git', args, {
    env,
    timeoutMs: options.timeoutMs ?? GIT_TIMEOUT_MS,
    okExitCodes: options.okExitCodes ?? [0],
    ...(options.signal ? { signal: options.signal } : {}),
    ...(options.input !== undefined ? { input: options.input } : {}),
  });
}
