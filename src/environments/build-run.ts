import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { AuditSink } from '../audit-sink.ts';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { newTaskId } from '../tasks/task-store.ts';
import { BuildLog } from './build-log.ts';
import { directoryBytes } from './directory-bytes.ts';
import type { EnvironmentBuilder } from './environment-builder.ts';
import { hasEnvironment } from './environment-key.ts';
import type { EnvironmentBuild, EnvironmentRecord, EnvironmentStore } from './environment-store.ts';

/** What running one build takes. */
export interface BuildRunDeps {
  store: EnvironmentStore;
  builder: EnvironmentBuilder;
  audit: AuditSink;
  log: Logger;
  dataDir: string;
  /** Where snapshot directories are made. */
  root: string;
}

/**
 * Runs one queued build to its end: into a directory of its own, recorded as an environment only
 * once the builder has made it completely; on failure (or `signal`, airlock stopping) the directory
 * is removed and the build fails with its reason. Returns the ended build and the environment of
 * the repository the new one supersedes.
 */
export async function runBuild(
  deps: BuildRunDeps,
  queued: EnvironmentBuild,
  signal: AbortSignal,
): Promise<{ ended: EnvironmentBuild; superseded?: EnvironmentRecord }> {
  const { store, audit, builder } = deps;
  const build = await store.startBuild(queued.id);
  const log = deps.log.child({ build: build.id, repo: build.repoFullName });
  const output = await BuildLog.open(deps.dataDir, build.id);
  const envId = `env-${newTaskId()}`;
  const dir = path.join(deps.root, envId);
  audit.append(build.id, 'build.state', { state: 'running', environment: envId });
  let made: { source: Awaited<ReturnType<EnvironmentBuilder['build']>>; sizeBytes: number };
  try {
    if (!hasEnvironment(build.config))
      throw new Error(`${build.repoFullName}'s config has no environment section`);
    const source = await builder.build({
      build,
      config: build.config,
      dir,
      signal,
      audit: { append: (_id, type, data) => audit.append(build.id, type, data) },
      log,
      output: (text) => output.write(text),
      source: (s) => store.noteSource(build.id, { commitSha: s.commitSha, envKey: s.envKey }),
    });
    made = { source, sizeBytes: await directoryBytes(dir) };
  } catch (error) {
    await rm(dir, { recursive: true, force: true });
    const reason = signal.aborted ? `interrupted: ${errorMessage(signal.reason)}` : errorMessage(error);
    output.write(`\nbuild failed: ${reason}\n`);
    await output.close();
    const ended = await store.failBuild(build.id, reason, output.tail());
    audit.append(build.id, 'build.outcome', { state: 'failed', reason });
    log.warn({ err: reason }, 'environment build failed');
    return { ended };
  }
  await output.close();
  const superseded = await store.current(build.repoFullName);
  const { source, sizeBytes } = made;
  await store.succeedBuild(build.id, { id: envId, dir, sizeBytes, ...source }, output.tail());
  // The workspace's refs are in the build's `build.source` already.
  const { workspaceRefs: _refs, ...outcome } = source;
  audit.append(build.id, 'build.outcome', { state: 'succeeded', environment: envId, sizeBytes, ...outcome });
  log.info({ environment: envId, sizeBytes }, 'environment built');
  return { ended: await store.build(build.id), ...(superseded ? { superseded } : {}) };
}
