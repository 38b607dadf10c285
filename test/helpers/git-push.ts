import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { runProcess } from '../../src/process/run-process.ts';

/**
 * Commits `files` on top of `base` and pushes them to `branch` of a remote, as a task's agent
 * would through the proxy. `remote` carries its own credentials (tests only). Returns the new sha.
 */
export async function pushCommit(options: {
  remote: string;
  base: string;
  branch: string;
  files: Record<string, string>;
  message?: string;
  extraHeader?: string;
}): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'airlock-push-'));
  const env = {
    HOME: dir,
    GIT_AUTHOR_NAME: 'test',
    GIT_AUTHOR_EMAIL: 'test@example.invalid',
    GIT_COMMITTER_NAME: 'test',
    GIT_COMMITTER_EMAIL: 'test@example.invalid',
    GIT_TERMINAL_PROMPT: '0',
  };
  const header = options.extraHeader ? ['-c', `http.extraHeader=${options.extraHeader}`] : [];
  const git = (...args: string[]) =>
    runProcess('git', [...header, ...args], { cwd: dir, env, timeoutMs: 30_000 });
  try {
    await git('clone', '--quiet', '--branch', options.base, options.remote, '.');
    for (const [file, content] of Object.entries(options.files)) {
      await mkdir(path.dirname(path.join(dir, file)), { recursive: true });
      await writeFile(path.join(dir, file), content);
    }
    await git('add', '-A');
    await git('commit', '--quiet', '-m', options.message ?? 'change');
    await git('push', '--quiet', 'origin', `HEAD:refs/heads/${options.branch}`);
    return (await git('rev-parse', 'HEAD')).stdout.trim();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
