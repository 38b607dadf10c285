import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { type Airlock, buildAirlock, type OpenedSandbox } from '../airlock.ts';
import type { AppConfig } from '../config/app-config.ts';
import { parseRepoConfig, type RepoConfig } from '../config/repo-config.ts';
import { ConfigError, errorMessage } from '../errors.ts';
import type { Logger } from '../logger.ts';
import { runProcess } from '../process/run-process.ts';
import type { SecretRedactor } from '../secrets.ts';
import type { Task } from '../tasks/task.ts';
import { enterState, recordTaskCreated, runTaskToEnd } from '../tasks/task-lifecycle.ts';
import { TaskCancelled } from '../tasks/task-runner.ts';
import { withSpan, withTraceParent } from '../tracing/trace-parent.ts';
import { startLocalGitServer } from './local-git-server.ts';

/** What `airlock run` was asked to do. */
export interface LocalRunRequest {
  repoPath: string;
  prompt: string;
  /** Overrides `agent:` from the repository's .github/airlock.yml. */
  agent?: RepoConfig['agent'];
  /** Overrides `script:` (the script agent's path inside the repository). */
  script?: string;
}

/** How a local run ended and where its record is. */
export interface LocalRunOutcome {
  task: Task;
  /** The task's events as JSON lines, exported when it ended. */
  recordFile: string;
  database: string;
}

/**
 * Runs one task against a local git repository with no GitHub: the repository is served to the
 * task's credential proxy by a loopback git server holding a per-run secret, and everything else is
 * what a GitHub task gets (microVM, proxy, ref policy, egress allowlist, audit record). The result
 * is left on branch `airlock/<task>` in the repository.
 */
export async function runLocalTask(
  request: LocalRunRequest,
  deps: {
    config: AppConfig;
    log: Logger;
    redactor: SecretRedactor;
    /** Opened once the repository and its configuration have been checked. */
    openSandbox: () => Promise<OpenedSandbox>;
    /** Progress lines for the person waiting (phase and elapsed time). */
    progress: (line: string) => void;
    /** Aborting cancels the task (Ctrl-C). */
    signal?: AbortSignal;
  },
): Promise<LocalRunOutcome> {
  const repo = await inspectRepository(request.repoPath);
  const repoConfig = await readRepoConfig(repo.top, request);
  await mkdir(deps.config.dataDir, { recursive: true });
  // Named after its directory and path, so two checkouts of the same name never share an environment.
  const pathTag = createHash('sha256').update(repo.top).digest('hex').slice(0, 8);
  const git = await startLocalGitServer(repo.gitDir, `${path.basename(repo.top)}-${pathTag}`);
  let airlock: Airlock | undefined;
  try {
    // Local mode is airlock without GitHub: the same core, the repository served by a loopback
    // git server whose per-run secret is the task's credential.
    airlock = await buildAirlock(
      { ...deps.config, github: undefined },
      {
        log: deps.log,
        redactor: deps.redactor,
        openSandbox: deps.openSandbox,
        repositories: { gitUrl: git.gitUrl, credentialFor: () => git.credential },
      },
    );
    const { tasks, audit } = airlock;
    // Invariant 10: VMs an earlier run left behind (killed mid-task) go before this one starts.
    const reaped = (await airlock.sandbox?.sandbox.reapOrphans()) ?? [];
    if (reaped.length)
      deps.progress(`reaped the VMs of ${reaped.length} earlier run(s): ${reaped.join(', ')}`);
    const fullName = `${git.repository.owner}/${git.repository.name}`;
    // Local mode has no delivery: the request's trace starts with this span.
    const asked = airlock.tracing.tracer.startSpan('local.request', { root: true });
    const task = await withSpan(asked, () =>
      tasks.create({
        installationId: null,
        repoFullName: fullName,
        repoId: null,
        issueNumber: null,
        prNumber: null,
        kind: 'local',
        baseRef: repo.branch,
        start: { from: 'ref', ref: repo.branch },
        actorLogin: repo.user.login,
        actorId: null,
        triggerEvent: 'local',
        triggerUrl: null,
        deliveryId: null,
        instruction: request.prompt,
        context: withTraceParent({
          issueTitle: firstLine(request.prompt),
          local: { coAuthor: repo.user.trailer, path: repo.top },
        }),
        config: repoConfig,
      }),
    );
    asked.setAttribute('airlock.task.id', task.id);
    asked.end();
    recordTaskCreated(audit, task);

    const started = performance.now();
    const elapsed = () => `${((performance.now() - started) / 1000).toFixed(1)} s`;
    const lifecycle = {
      ...airlock.lifecycle,
      onState: (moved: Task) =>
        deps.progress(`${moved.state.padEnd(9)} ${elapsed()}${moved.reason ? `  ${moved.reason}` : ''}`),
    };
    deps.progress(`task ${task.id} on ${repo.top} (${repoConfig.agent} agent, base ${repo.branch})`);
    if (repoConfig.environment) {
      const current = await airlock.environments?.store.current(fullName);
      deps.progress(
        !airlock.environments
          ? 'environment: this sandbox keeps no snapshots; the task boots the base image'
          : current
            ? `environment ${current.id} (built ${current.createdAt} at ${current.commitSha.slice(0, 12)})`
            : 'environment: none yet; building it first (later runs restore it)',
      );
      airlock.environments?.onBuildFinished((build) => {
        deps.progress(
          `environment build ${build.id} ${build.state}${build.reason ? `: ${build.reason}` : ''}`,
        );
        // The end of its log (the whole log is stored with the build).
        if (build.state === 'failed' && build.logTail)
          deps.progress(build.logTail.trimEnd().split('\n').slice(-20).join('\n'));
      });
    }
    const heartbeat = setInterval(() => {
      tasks.get(task.id).then(
        (now) => deps.progress(`${now.state.padEnd(9)} ${elapsed()}`),
        (error) =>
          deps.log.warn({ taskId: task.id, err: errorMessage(error) }, 'task state could not be read'),
      );
    }, 15_000);
    heartbeat.unref();
    const controller = new AbortController();
    const onAbort = () => controller.abort(new TaskCancelled('cancelled by the person running airlock run'));
    deps.signal?.addEventListener('abort', onAbort, { once: true });
    let finished: Task;
    try {
      const starting = await enterState(lifecycle, task.id, 'starting', { from: ['queued'] });
      finished = await runTaskToEnd(lifecycle, starting, {
        signal: controller.signal,
        log: deps.log.child({ taskId: task.id }),
      });
    } finally {
      clearInterval(heartbeat);
      deps.signal?.removeEventListener('abort', onAbort);
    }

    const recordFile = path.join(deps.config.dataDir, 'records', `${task.id}.jsonl`);
    await mkdir(path.dirname(recordFile), { recursive: true });
    await writeFile(recordFile, (await audit.events(task.id)).map((e) => `${JSON.stringify(e)}\n`).join(''), {
      mode: 0o600,
    });
    return { task: finished, recordFile, database: path.join(deps.config.dataDir, 'airlock.sqlite') };
  } finally {
    await git.close();
    await airlock?.stop();
  }
}

interface LocalRepository {
  top: string;
  gitDir: string;
  branch: string;
  user: { login: string; trailer: string };
}

async function inspectRepository(repoPath: string): Promise<LocalRepository> {
  const git = async (...args: string[]) => {
    const result = await runProcess('git', ['-C', repoPath, '-c', 'safe.directory=*', ...args], {
      env: { HOME: os.homedir() },
      timeoutMs: 10_000,
      okExitCodes: [0, 1, 128],
    });
    return { ok: result.exitCode === 0, out: result.stdout.trim(), err: result.stderr.trim() };
  };
  const top = await git('rev-parse', '--show-toplevel');
  if (!top.ok)
    throw new ConfigError(`${repoPath} is not a git repository`, [top.err || 'git rev-parse failed']);
  const gitDir = (await git('rev-parse', '--absolute-git-dir')).out;
  const branch = await git('symbolic-ref', '--quiet', '--short', 'HEAD');
  if (!branch.ok) {
    throw new ConfigError(`${top.out} has no branch checked out`, [
      'check out the branch the task should start from (airlock run starts from the current branch)',
    ]);
  }
  const name = (await git('config', 'user.name')).out || os.userInfo().username;
  const email = (await git('config', 'user.email')).out || `${os.userInfo().username}@localhost`;
  return { top: top.out, gitDir, branch: branch.out, user: { login: name, trailer: `${name} <${email}>` } };
}

/** The repository's committed .github/airlock.yml (as the VM will see it), with the CLI's overrides. */
async function readRepoConfig(top: string, request: LocalRunRequest): Promise<RepoConfig> {
  const shown = await runProcess(
    'git',
    ['-C', top, '-c', 'safe.directory=*', 'show', 'HEAD:.github/airlock.yml'],
    {
      timeoutMs: 10_000,
      okExitCodes: [0, 128],
    },
  );
  let config: RepoConfig;
  try {
    config = parseRepoConfig(shown.exitCode === 0 ? shown.stdout : undefined);
  } catch (error) {
    throw new ConfigError(`.github/airlock.yml in ${top} is invalid`, [errorMessage(error)]);
  }
  return parseRepoConfig(
    JSON.stringify({
      ...config,
      ...(request.agent ? { agent: request.agent } : {}),
      ...(request.script ? { script: request.script } : {}),
    }),
  );
}

function firstLine(text: string): string {
  const line = text.trim().split('\n')[0] ?? '';
  return line.length > 72 ? `${line.slice(0, 71)}…` : line;
}
