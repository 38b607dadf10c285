import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { AuditSink } from '../audit-sink.ts';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { newTaskId } from '../tasks/task-store.ts';
import type { BuildLog } from './build-log.ts';
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
  /** Where snapshot directories are made. */
  root: string;
  /** How often the build's row is renewed while it runs (a sweep fails one whose host went away). */
  heartbeatMs: number;
}

/**
 * Runs one queued build to its end: into a directory of its own, recorded as an environment only
 * once the builder has made it completely; on failure (or `signal`, airlock stopping) the directory
 * is removed and the build fails with its reason. Returns the ended build and the environment of
 * the repository the new one supersedes; undefined when another worker took the build first.
 */
export async function runBuild(
  deps: BuildRunDeps,
  queued: EnvironmentBuild,
  signal: AbortSignal,
): Promise<{ ended: EnvironmentBuild; superseded?: EnvironmentRecord } | undefined> {
  const { store } = deps;
  const build = await store.startBuild(queued.id);
  // Another worker took it first.
  if (!build) return undefined;
  const log = deps.log.child({ build: build.id, repo: build.repoFullName, host: build.host });
  const output = await store.openLog(build.id);
  const beat = setInterval(
    () =>
      void store
        .heartbeat(build.id)
        .catch((error) => log.warn({ err: errorMessage(error) }, 'build heartbeat failed')),
    deps.heartbeatMs,
  );
  try {
    return await runStarted({ ...deps, log }, build, output, signal);
  } finally {
    clearInterval(beat);
  }
}

async function runStarted(
  deps: BuildRunDeps,
  build: EnvironmentBuild,
  output: BuildLog,
  signal: AbortSignal,
): Promise<{ ended: EnvironmentBuild; superseded?: EnvironmentRecord }> {
  const { store, audit, builder, log } = deps;
  const envId = `env-${newTaskId()}`;
  const dir = path.join(deps.root, envId);
  audit.append(build.id, 'build.state', {
    state: 'running',
    environment: envId,
    ...(build.host !== null ? { host: build.host } : {}),
  });
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
    await closeLog(output, log);
    const ended = (await store.failBuild(build.id, reason, output.tail())) ?? (await store.build(build.id));
    audit.append(build.id, 'build.outcome', { state: 'failed', reason });
    log.warn({ err: reason }, 'environment build failed');
    return { ended };
  }
  await closeLog(output, log);
  const superseded = await store.current(build.repoFullName);
  const { source, sizeBytes } = made;
  await store.succeedBuild(build.id, { id: envId, dir, sizeBytes, ...source }, output.tail());
  // The workspace's refs are in the build's `build.source` already.
  const { workspaceRefs: _refs, ...outcome } = source;
  audit.append(build.id, 'build.outcome', { state: 'succeeded', environment: envId, sizeBytes, ...outcome });
  log.info({ environment: envId, sizeBytes }, 'environment built');
  return { ended: await store.build(build.id), ...(superseded ? { superseded } : {}) };
}

/** Writes the rest of the log; a log that could not be stored does not fail the build. */
async function closeLog(output: BuildLog, log: Logger): Promise<void> {
  await output
    .close()
    .catch((error) => log.warn({ err: errorMessage(error) }, 'the build log could not be stored'));
}
