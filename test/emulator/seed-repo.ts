import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gitText } from './git-cli.ts';

/**
 * Creates a bare repository at `dir` whose default branch holds one commit of `files`, with
 * pushes over HTTP enabled.
 */
export async function seedBareRepo(
  dir: string,
  options: { defaultBranch: string; files: Record<string, string> },
): Promise<void> {
  mkdirSync(dir, { recursive: true });
  await gitText(dir, ['init', '--bare', '--quiet', `--initial-branch=${options.defaultBranch}`]);
  await gitText(dir, ['config', 'http.receivepack', 'true']);
  const work = mkdtempSync(path.join(tmpdir(), 'airlock-gh-seed-'));
  try {
    for (const [file, content] of Object.entries(options.files)) {
      mkdirSync(path.dirname(path.join(work, file)), { recursive: true });
      writeFileSync(path.join(work, file), content);
    }
    const env = {
      GIT_WORK_TREE: work,
      GIT_INDEX_FILE: path.join(tmpdir(), `airlock-gh-index-${process.pid}-${path.basename(work)}`),
    };
    try {
      await gitText(dir, ['add', '-A', '.'], { env, cwd: work });
      await gitText(dir, ['commit', '--quiet', '--allow-empty', '-m', 'Initial commit'], { env, cwd: work });
    } finally {
      rmSync(env.GIT_INDEX_FILE, { force: true });
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Creates `dir` as a bare fork (full copy of refs) of the bare repository `parentDir`. */
export async function forkBareRepo(parentDir: string, dir: string): Promise<void> {
  mkdirSync(path.dirname(dir), { recursive: true });
  await gitText(undefined, ['clone', '--bare', '--quiet', '--no-local', parentDir, dir]);
  await gitText(dir, ['config', 'http.receivepack', 'true']);
}
