import { appendFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { gitEnv, gitText } from './git-cli.ts';

/**
 * Creates a bare repository at `dir` whose default branch holds one commit of `files`, with
 * pushes over HTTP enabled. The commit is written by one `git fast-import`, as `git add` and
 * `git commit` in a work tree would write it, with the emulator's author and date (gitEnv).
 */
export async function seedBareRepo(
  dir: string,
  options: { defaultBranch: string; files: Record<string, string> },
): Promise<void> {
  mkdirSync(dir, { recursive: true });
  await gitText(dir, ['init', '--bare', '--quiet', `--initial-branch=${options.defaultBranch}`]);
  appendFileSync(path.join(dir, 'config'), '[http]\n\treceivepack = true\n');
  const env = gitEnv();
  const when = `${Date.parse(env.GIT_COMMITTER_DATE!) / 1000} +0000`;
  const data = (text: string | Buffer) => {
    const bytes = Buffer.from(text);
    return [Buffer.from(`data ${bytes.length}\n`), bytes, Buffer.from('\n')];
  };
  const stream = [
    Buffer.from(`commit refs/heads/${options.defaultBranch}\n`),
    Buffer.from(`author ${env.GIT_AUTHOR_NAME} <${env.GIT_AUTHOR_EMAIL}> ${when}\n`),
    Buffer.from(`committer ${env.GIT_COMMITTER_NAME} <${env.GIT_COMMITTER_EMAIL}> ${when}\n`),
    ...data('Initial commit\n'),
    ...Object.entries(options.files).flatMap(([file, content]) => [
      Buffer.from(`M 100644 inline ${fastImportPath(file)}\n`),
      ...data(content),
    ]),
  ];
  await gitText(dir, ['fast-import', '--quiet'], { input: Buffer.concat(stream) });
}

/** A path as fast-import reads it: C-style quoted when it has spaces, quotes or backslashes. */
function fastImportPath(file: string): string {
  if (/[\x00-\x1f\x7f]/.test(file))
    throw new Error(`emulator: no control characters in file names: ${JSON.stringify(file)}`);
  return /[\s"\\]/.test(file) ? JSON.stringify(file) : file;
}

/** Creates `dir` as a bare fork (full copy of refs) of the bare repository `parentDir`. */
export async function forkBareRepo(parentDir: string, dir: string): Promise<void> {
  mkdirSync(path.dirname(dir), { recursive: true });
  await gitText(undefined, ['clone', '--bare', '--quiet', '--no-local', parentDir, dir]);
  await gitText(dir, ['config', 'http.receivepack', 'true']);
}
