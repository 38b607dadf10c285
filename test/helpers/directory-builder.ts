import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type {
  BuildRequest,
  BuiltSource,
  EnvironmentBuilder,
} from '../../src/environments/environment-builder.ts';
import {
  environmentKey,
  environmentSpecHash,
  keyFilePathspecs,
  parseLsFiles,
} from '../../src/environments/environment-key.ts';
import { runProcess } from '../../src/process/run-process.ts';
import { whenAborted } from '../../src/process/when-aborted.ts';
import type { VmSnapshot } from '../../src/sandbox/sandbox.ts';

/**
 * An environment builder for control-plane tests (tests only: the product builds in a microVM).
 * It clones the default branch on the host and keys it as the VM builder does, logs the setup it
 * would run, and makes a snapshot directory holding the commit, so tests see which environment a
 * task got. `hold()` makes builds wait until released; `failNext` makes the next one fail.
 */
export class DirectoryBuilder implements EnvironmentBuilder {
  readonly imageDigest = 'test-image';
  readonly builds: string[] = [];
  failNext: string | undefined;
  #held: { promise: Promise<void>; release: () => void } | undefined;

  readonly #remote: (repoFullName: string, buildId: string) => Promise<string>;

  /** `remote`: the repository's git URL with a credential, for the build (`buildId`) asking. */
  constructor(remote: (repoFullName: string, buildId: string) => Promise<string>) {
    this.#remote = remote;
  }

  /** Builds started from now on wait in their setup step until the returned function is called. */
  hold(): () => void {
    let release!: () => void;
    const promise = new Promise<void>((resolve) => {
      release = resolve;
    });
    this.#held = { promise, release };
    return () => {
      this.#held = undefined;
      release();
    };
  }

  async build(request: BuildRequest): Promise<BuiltSource> {
    this.builds.push(request.build.id);
    const work = await mkdtemp(path.join(tmpdir(), 'airlock-envbuild-'));
    try {
      const git = async (...args: string[]) =>
        (await runProcess('git', args, { cwd: work, env: { HOME: work }, timeoutMs: 30_000 })).stdout;
      await git('clone', '--quiet', await this.#remote(request.build.repoFullName, request.build.id), '.');
      const commitSha = (await git('rev-parse', 'HEAD')).trim();
      const keyFiles = parseLsFiles(await git('ls-files', '-s', '--', ...keyFilePathspecs(request.config)));
      const specHash = environmentSpecHash(request.config, this.imageDigest);
      const source = { commitSha, specHash, envKey: environmentKey(specHash, keyFiles) };
      await request.source(source);
      for (const command of request.config.environment.setup) request.output(`$ setup \`${command}\`\n`);
      if (this.#held) await Promise.race([this.#held.promise, whenAborted(request.signal)]);
      const failure = this.failNext;
      this.failNext = undefined;
      if (failure) {
        request.output(`${failure}\n`);
        throw new Error(failure);
      }
      await mkdir(request.dir, { recursive: true });
      await writeFile(
        path.join(request.dir, 'snapshot.json'),
        JSON.stringify({ commitSha, createdAt: new Date().toISOString() }),
      );
      return source;
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }

  /** Nothing is kept warm without VMs. */
  async retire(_dir: string): Promise<void> {}

  async open(dir: string): Promise<VmSnapshot | undefined> {
    const text = await readFile(path.join(dir, 'snapshot.json'), 'utf8').catch(() => undefined);
    if (text === undefined) return undefined;
    const { createdAt } = JSON.parse(text) as { createdAt: string };
    return { dir, key: 'test-snapshot', shape: { cpus: 2, memoryMib: 2048, diskMib: 8192 }, createdAt };
  }
}
