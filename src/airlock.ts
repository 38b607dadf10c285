import { hostname } from 'node:os';
import path from 'node:path';
import { AuditLog } from './audit/audit-log.ts';
import { startRetention } from './audit/retention.ts';
import { type Clock, systemClock } from './clock.ts';
import type { AppConfig } from './config/app-config.ts';
import { modelUpstreams } from './config/model-upstreams.ts';
import { BUILDS_CHANNEL, BuildQueue } from './environments/build-queue.ts';
import { buildFailureJob } from './environments/build-report.ts';
import type { EnvironmentBuilder } from './environments/environment-builder.ts';
import { hasEnvironment } from './environments/environment-key.ts';
import { EnvironmentStore } from './environments/environment-store.ts';
import { Environments } from './environments/environments.ts';
import { VmEnvironmentBuilder } from './environments/vm-environment-builder.ts';
import { errorMessage } from './errors.ts';
import { GitMirrors } from './git/git-mirrors.ts';
import { GitHubJobQueue, queueStateJobs, queueWithChange } from './github/github-jobs.ts';
import { type GitHubPlane, startGitHubPlane } from './github/github-plane.ts';
import type { OctokitTuning } from './github/octokit-factory.ts';
import { type TaskCredential, taskCredential } from './github/task-token.ts';
import type { Logger } from './logger.ts';
import { AirlockMetrics } from './metrics/airlock-metrics.ts';
import { resolveDestinationSecrets } from './policy/destination-secrets.ts';
import { loadOperatorPolicy } from './policy/load-operator-policy.ts';
import { policyFor } from './policy/policy-for.ts';
import { allowedModelFeatures } from './policy/policy-violations.ts';
import { type DebianSource, debianSourcesFor } from './proxy/debian-sources.ts';
import type { ModelUpstreams } from './proxy/model-proxy.ts';
import { openSandbox } from './sandbox/open-sandbox.ts';
import type { Sandbox } from './sandbox/sandbox.ts';
import type { SecretRedactor } from './secrets.ts';
import { SpendLedger } from './spend/spend-ledger.ts';
import { startCheckpointer } from './store/checkpointer.ts';
import { openDatabase, openSqliteStore, openStore, type Store } from './store/database.ts';
import { ApprovalStore } from './tasks/approval-store.ts';
import { HeldResults } from './tasks/held-results.ts';
import { pushGate } from './tasks/push-gate.ts';
import { isTerminal, splitRepo, type Task } from './tasks/task.ts';
import type { LifecycleDeps, StateListener } from './tasks/task-lifecycle.ts';
import type { TaskRunner } from './tasks/task-runner.ts';
import { TaskFailure } from './tasks/task-runner.ts';
import { localTaskRuns, type TaskRuns } from './tasks/task-runs.ts';
import { TaskStore } from './tasks/task-store.ts';
import type { PromptThread } from './tasks/task-thread.ts';
import { VmTaskRunner } from './tasks/vm-task-runner.ts';
import { startTracing, type Tracing } from './tracing/tracing.ts';
import { type AppInfo, ControlPlaneClient, remoteCredential } from './workers/control-channel.ts';
import { controlPlaneServices, type InternalApi, startInternalApi } from './workers/internal-api.ts';
import { leasedTaskRuns } from './workers/leased-task-runs.ts';
import { TaskLeases, type WorkerIdentity } from './workers/task-leases.ts';
import { TASKS_CHANNEL } from './workers/task-worker.ts';

/** Events a group commit holds at most before committing early. */
const AUDIT_GROUP_COMMIT_MAX_EVENTS = 512;

/** A sandbox and the accelerator it runs on. */
export interface OpenedSandbox {
  sandbox: Sandbox;
  accel: { accel: 'kvm' | 'tcg'; reason: string };
}

/**
 * The few things that differ between production, local mode and a test world. Everything else is
 * built from the validated settings.
 */
export interface AirlockPorts {
  log: Logger;
  redactor: SecretRedactor;
  clock?: Clock;
  /** Opens the sandbox; by default the VM image under settings.cacheDir on the probed accelerator. */
  openSandbox?: () => Promise<OpenedSandbox>;
  /**
   * Runs tasks instead of microVMs. Only control-plane tests pass one (a double that pushes with
   * git, so webhooks-to-PR logic is tested without booting VMs); the product runs VmTaskRunner.
   */
  runner?: TaskRunner;
  /**
   * Builds environments instead of microVMs. Only control-plane tests pass one (with their runner
   * double); the product builds with VmEnvironmentBuilder on its sandbox.
   */
  environmentBuilder?: EnvironmentBuilder;
  /** Where task repositories live when not on GitHub (local mode's loopback git server). */
  repositories?: {
    gitUrl(owner: string, name: string): string;
    /** The credential for a task's or an environment build's repository. */
    credentialFor(subject: { repoFullName: string }): TaskCredential;
  };
  /** Model API upstreams; by default from settings.models. */
  models?: ModelUpstreams;
  octokit?: OctokitTuning;
  /** How often background loops look for work when nothing wakes them, in ms. */
  pollMs?: number;
  /** The environment the settings came from, for the operator policy's `AIRLOCK_MAX_*` caps. */
  environment?: Record<string, string | undefined>;
}

/** airlock built from its settings: the store, the record, the sandbox, the lifecycle, GitHub. */
export interface Airlock {
  settings: AppConfig;
  log: Logger;
  clock: Clock;
  /** The database, through the query layer every store moves to (see src/store/database.ts). */
  store: Store;
  audit: AuditLog;
  tasks: TaskStore;
  metrics: AirlockMetrics;
  sandbox: OpenedSandbox | undefined;
  /** Repositories' environments and their builds (absent without a sandbox or a builder). */
  environments: Environments | undefined;
  /** The parts every task's lifecycle runs on (scheduler and local mode alike). */
  lifecycle: LifecycleDeps;
  approvals: ApprovalStore;
  held: HeldResults;
  spend: SpendLedger;
  /** The GitHub side (webhooks, intake, scheduler, reporting), when GitHub App credentials are set. */
  github: GitHubPlane | undefined;
  /** Where tasks run (this process's scheduler, or leases on PostgreSQL); absent in local mode. */
  runs: TaskRuns | undefined;
  /** The internal API for workers, on a control plane with PostgreSQL and AIRLOCK_WORKER_SECRET. */
  internal: InternalApi | undefined;
  /** This process's tracing (exported over OTLP when an endpoint is set). */
  tracing: Tracing;
  stop(): Promise<void>;
}

/**
 * The composition root: builds every part of airlock from validated settings and the ports, and
 * wires them. With GitHub App credentials it starts the GitHub plane (webhook listener first; see
 * startGitHubPlane); without, it is the core local mode runs tasks on.
 */
export async function buildAirlock(settings: AppConfig, ports: AirlockPorts): Promise<Airlock> {
  const { log } = ports;
  const clock = ports.clock ?? systemClock;
  const { role } = settings;
  // Local mode is the one-process role built without GitHub.
  const tracing = startTracing(settings.tracing, {
    role: role === 'all' && !settings.github ? 'local' : role,
    log,
  });
  // One host: SQLite under the data directory. Several: the PostgreSQL every process shares.
  const store = settings.databaseUrl
    ? await openStore({ url: settings.databaseUrl })
    : openSqliteStore(openDatabase(path.join(settings.dataDir, 'airlock.sqlite')));
  const shared = store.dialect === 'postgres';
  const checkpointer = startCheckpointer(store, log);
  const audit = new AuditLog(store, clock, ports.redactor, {
    keepConversation: settings.retention.promptDays !== 0,
    // Bursts (exec audit, agent output, proxy traffic from several VMs) commit once per event-loop turn.
    groupCommit: { maxEvents: AUDIT_GROUP_COMMIT_MAX_EVENTS },
    onError: (error, what) =>
      log.error(
        { err: errorMessage(error) },
        what === 'commit' ? 'audit events could not be stored' : 'an audit listener failed',
      ),
  });
  // A task's live page, on any process, hears of the events every process commits.
  const stopSharing = await audit.shareAcrossProcesses();
  const metrics = new AirlockMetrics(store);
  audit.subscribe((event) => metrics.observeAuditEvent(event));
  const stopRetention = startRetention({ store, audit, clock, log }, { days: settings.retention.promptDays });
  // On PostgreSQL a task queued by any process wakes every worker once its write has committed.
  const tasks = new TaskStore(
    store,
    clock,
    shared ? { onQueued: () => void store.notify(TASKS_CHANNEL).catch(() => undefined) } : {},
  );
  const policy = loadOperatorPolicy(settings.policyFile, ports.environment ?? {});
  const rulesFor = (repoFullName: string) => policyFor(policy, repoFullName);
  const secrets = resolveDestinationSecrets(policy.secrets, ports.environment ?? {});
  for (const secret of secrets.values()) {
    for (const value of [...secret.values, secret.headerValue]) ports.redactor.add(value);
  }
  // A control plane runs no task: it has no sandbox.
  const sandbox =
    ports.runner || role === 'control'
      ? undefined
      : await (
          ports.openSandbox ??
          (() => openSandbox({ ...settings, maxVms: settings.scheduler.maxConcurrent, log }))
        )();

  const approvals = new ApprovalStore(store, clock);
  const held = new HeldResults(store, clock, settings.dataDir);
  // Held results this host kept whose push or ending happened elsewhere (or before a restart).
  if (role !== 'control') {
    const removed = await held.removeDiscarded();
    if (removed.length) log.info({ tasks: removed }, 'removed held results that are no longer waiting');
  }
  const spend = new SpendLedger(store, clock, policy.prices);

  // The GitHub plane attaches its reporting to state changes once it exists (a worker queues the
  // same GitHub jobs for the control plane); before it, what the task spent is recorded once its
  // proxy has closed (it ended, or waits for approval), from its record, so what GitHub is told
  // includes it; a held result goes when its task ends.
  const listeners: StateListener[] = [
    async (task) => {
      if (!isTerminal(task.state) && task.state !== 'awaiting_approval') return;
      await spend.record(task, await audit.events(task.id, { limit: 100_000 }, { types: ['proxy.model'] }));
      if (isTerminal(task.state) && (await held.get(task.id))?.discardedAt === null)
        // Files go once the ending is committed (it may be part of a transaction).
        store.afterCommit(() => {
          held
            .discard(task.id)
            .catch((error) =>
              log.warn({ taskId: task.id, err: errorMessage(error) }, 'held result could not be deleted'),
            );
        });
    },
  ];
  const lifecycle: LifecycleDeps = {
    tasks,
    audit,
    clock,
    runner: ports.runner ?? unreachableRunner(),
    tracer: tracing.tracer,
    onState: async (task) => {
      for (const listener of listeners) await listener(task);
    },
  };

  // A worker holds no GitHub App key: what needs it, it asks the control plane for.
  const control = role === 'worker' ? await connectToControlPlane(settings, log) : undefined;
  const gh = settings.github;
  const webUrl = control?.app.webUrl ?? gh?.webUrl;
  const gitUrl =
    ports.repositories?.gitUrl ??
    ((owner: string, name: string) => `${webUrl?.replace(/\/$/, '')}/${owner}/${name}.git`);
  const tokenDeps = gh
    ? { appId: gh.appId, privateKey: gh.privateKey, baseUrl: gh.apiUrl, redactor: ports.redactor }
    : undefined;
  const remote = control
    ? (subject: { id: string }, kind: 'task' | 'read' | 'build') =>
        remoteCredential({
          client: control.client,
          taskId: subject.id,
          kind,
          githubApiUrl: control.app.apiUrl,
          audit,
          redactor: ports.redactor,
        })
    : undefined;
  const credentialFor = (task: Task): TaskCredential => {
    if (remote) return remote(task, 'task');
    if (task.installationId === null || !tokenDeps)
      throw new Error(`task ${task.id} has no GitHub installation`);
    const { owner, repo } = splitRepo(task.repoFullName);
    return taskCredential(
      { ...tokenDeps, audit },
      { taskId: task.id, installationId: task.installationId, repository: { owner, name: repo } },
    );
  };

  // Workers lease the tasks they run and say they are there (several hosts only).
  const leases = shared
    ? new TaskLeases(store, clock, { leaseMs: settings.cluster.leaseSeconds * 1000 })
    : undefined;
  // Environment builds run on the host that keeps their snapshots: with several hosts, each worker
  // builds and keeps its own (docs/environments.md), and a push or `/airlock rebuild` asks each
  // host still there that has one. A control plane only queues them.
  const environmentStore = new EnvironmentStore(store, clock, {
    host: shared && role !== 'control' ? settings.cluster.workerName : null,
  });
  const buildQueue = new BuildQueue({
    store: environmentStore,
    audit,
    log,
    clock,
    ...(shared ? { notify: () => store.notify(BUILDS_CHANNEL) } : {}),
    ...(leases ? { workers: leases } : {}),
  });
  const builder = ports.environmentBuilder ?? vmBuilder(sandbox?.sandbox);
  const environments = builder
    ? new Environments({
        store: environmentStore,
        queue: buildQueue,
        ...(shared ? { listen: (onMessage: () => void) => store.listen(BUILDS_CHANNEL, onMessage) } : {}),
        builder,
        audit,
        clock,
        log,
        dataDir: settings.dataDir,
        diskBudgetBytes: settings.environments.diskGib * 2 ** 30,
      })
    : undefined;
  function vmBuilder(opened: Sandbox | undefined): EnvironmentBuilder | undefined {
    if (!opened) return undefined;
    let archives: readonly DebianSource[] | undefined;
    return new VmEnvironmentBuilder({
      sandbox: opened,
      dataDir: settings.dataDir,
      debianArchives: () => {
        archives ??= debianSourcesFor(opened.debianRelease, settings.debianSources);
        return archives;
      },
      gitUrl,
      credentialFor: (build) => {
        if (ports.repositories) return ports.repositories.credentialFor(build);
        if (remote) return remote(build, 'build');
        if (build.installationId === null || !tokenDeps)
          throw new Error('the build has no GitHub installation to mint a token for');
        const { owner, repo } = splitRepo(build.repoFullName);
        return taskCredential(
          { ...tokenDeps, audit },
          { taskId: build.id, installationId: build.installationId, repository: { owner, name: repo } },
        );
      },
    });
  }

  let github: GitHubPlane | undefined;
  const promptThread = async (task: Task): Promise<PromptThread | undefined> =>
    control ? control.client.promptThread(task.id) : github?.promptThread(task);
  if (tokenDeps || control) {
    // Only with GitHub: local mode's branch goes to the person's own repository, unapproved.
    lifecycle.pushGate = pushGate({
      ...lifecycle,
      store,
      approvals,
      held,
      events: (taskId) => audit.events(taskId, { limit: 100_000 }, { types: ['vm.exec', 'proxy.egress'] }),
      credentialFor,
      gitUrl,
    });
  }
  if (sandbox && !ports.runner) {
    lifecycle.runner = new VmTaskRunner({
      sandbox: sandbox.sandbox,
      audit,
      log,
      tracer: tracing.tracer,
      dataDir: settings.dataDir,
      ...(tokenDeps ? { token: tokenDeps } : {}),
      ...(ports.repositories ? { credentialFor: ports.repositories.credentialFor } : {}),
      ...(remote
        ? {
            credentialFor: (task: Task) => remote(task, 'task'),
            readCredentialFor: (task: Task) => remote(task, 'read'),
          }
        : {}),
      environments: environments ?? noEnvironments(),
      gitUrl,
      models: ports.models ?? modelUpstreams(settings.models),
      app: { slug: () => control?.app.slug ?? github?.appSlug() ?? 'airlock' },
      promptThread,
      earlierTasks: (task) => tasks.onBranch(task.repoFullName, task.branch),
      modelFeatures: (task) => allowedModelFeatures(rulesFor(task.repoFullName), task.config),
      ...(gh || control ? { held } : {}),
      readRepositories: (task) => rulesFor(task.repoFullName).read_repositories,
      destinationSecrets: (task) => rulesFor(task.repoFullName).secrets.map((name) => secrets.get(name)!),
      // Restored tasks' workspaces are brought up to date from the host's mirrors.
      ...(environments
        ? { mirrors: new GitMirrors({ root: path.join(settings.dataDir, 'git-mirrors'), clock, log }) }
        : {}),
    });
  }

  // Where tasks run: on one host, this process's scheduler; on PostgreSQL, workers that lease
  // them (this process is one unless it is a control plane only).
  const reaper = sandbox?.sandbox ?? { reapOrphans: async () => [] };
  const identity: WorkerIdentity = {
    id:
      role === 'control'
        ? `control-${settings.cluster.workerName}-${process.pid}`
        : settings.cluster.workerName,
    host: hostname(),
    pid: process.pid,
    capacity: settings.scheduler.maxConcurrent,
  };
  const runs: TaskRuns | undefined =
    leases && (gh || control)
      ? leasedTaskRuns({
          store,
          lifecycle,
          audit,
          leases,
          log,
          ownerId: identity.id,
          ...(role === 'control'
            ? {}
            : { worker: { identity, maxPerRepo: settings.scheduler.maxPerRepo, reaper, ...pollMs(ports) } }),
        })
      : gh
        ? localTaskRuns({ lifecycle, audit, reaper, log, limits: settings.scheduler })
        : undefined;

  if (control) {
    lifecycle.publish = (task, result) => control.client.publish(task.id, result);
    // What GitHub hears of a task's state, and of an environment build that failed here, queued
    // for the control plane's job loop.
    const jobs = new GitHubJobQueue(store, clock);
    listeners.push((task) => queueStateJobs(store, jobs, log, task));
    environments?.onBuildFinished((build) => {
      const job = buildFailureJob(build, settings.publicUrl);
      if (job) queueWithChange(store, log, `build ${build.id}`, () => jobs.enqueue(job));
    });
  }

  if (settings.github && role !== 'worker' && runs) {
    github = await startGitHubPlane({
      settings,
      github: settings.github,
      store,
      clock,
      log,
      audit,
      tasks,
      metrics,
      lifecycle,
      runs,
      listeners,
      rulesFor,
      approvals,
      spend,
      held,
      // Builds are queued where something builds them: here, or (on PostgreSQL) on the workers.
      ...(environments || shared
        ? {
            environments: {
              queue: buildQueue,
              store: environmentStore.forHost(null),
              log: (buildId: string) => environmentStore.readLog(buildId),
              ...(environments ? { onBuildFinished: environments.onBuildFinished.bind(environments) } : {}),
            },
          }
        : {}),
      ...(sandbox ? { health: { accel: sandbox.accel.accel, image: sandbox.sandbox.imageDigest } } : {}),
      ...(ports.octokit ? { octokit: ports.octokit } : {}),
      ...(ports.pollMs ? { pollMs: ports.pollMs } : {}),
    });
  } else if (runs) {
    // A worker: no webhooks, no web; it recovers what it left on this host and takes work.
    await runs.start();
  }
  const plane = github;
  const internal =
    tokenDeps && shared && plane && settings.cluster.workerSecret
      ? await startInternalApi({
          host: settings.cluster.internalHost,
          port: settings.cluster.internalPort,
          store,
          secret: settings.cluster.workerSecret,
          clock,
          log,
          services: controlPlaneServices({
            token: tokenDeps,
            audit,
            readRepositories: (task) => rulesFor(task.repoFullName).read_repositories,
            promptThread: (task) => plane.promptThread(task),
            publish: () => lifecycle.publish,
            app: () => ({
              slug: plane.appSlug(),
              webUrl: settings.github!.webUrl,
              apiUrl: settings.github!.apiUrl,
            }),
          }),
        })
      : undefined;

  // After the GitHub plane listens for builds that end: recovery may fail an interrupted one.
  await environments?.start();

  let stopped: Promise<void> | undefined;
  return {
    settings,
    log,
    clock,
    store,
    audit,
    tasks,
    metrics,
    sandbox,
    environments,
    lifecycle,
    approvals,
    held,
    spend,
    github,
    runs,
    internal,
    tracing,
    stop: () => {
      stopped ??= (async () => {
        await stopRetention();
        await internal?.close();
        if (github) await github.stop();
        else await runs?.stop();
        await environments?.stop();
        // Warm VMs are nobody's task's: they go with this airlock, not only with its process.
        await sandbox?.sandbox.close();
        await audit.flush();
        await stopSharing();
        await checkpointer.stop();
        await store.close();
        await tracing.shutdown();
      })();
      return stopped;
    },
  };
}

function pollMs(ports: AirlockPorts): { pollMs?: number } {
  return ports.pollMs ? { pollMs: ports.pollMs } : {};
}

/**
 * A worker's link to the control plane: its client, and what it learns of the GitHub App there
 * (slug, and the GitHub its tasks clone from). Asked at start, again with back-off while the control
 * plane does not answer (workers may start first).
 */
async function connectToControlPlane(
  settings: AppConfig,
  log: Logger,
): Promise<{ client: ControlPlaneClient; app: AppInfo }> {
  const client = new ControlPlaneClient({
    url: settings.cluster.controlUrl!,
    secret: settings.cluster.workerSecret!,
    workerId: settings.cluster.workerName,
  });
  for (let attempt = 1; ; attempt++) {
    try {
      return { client, app: await client.app() };
    } catch (error) {
      const waitMs = Math.min(30_000, 500 * 2 ** Math.min(attempt, 6));
      log.warn(
        { err: errorMessage(error), retryInMs: waitMs, controlUrl: settings.cluster.controlUrl },
        'the control plane does not answer yet',
      );
      await new Promise((resolve) => setTimeout(resolve, waitMs));
    }
  }
}

/**
 * Where environments are not built (no builder was given): a task whose repository configures one
 * fails with that reason rather than running without its toolchain.
 */
function noEnvironments(): Pick<Environments, 'forTask'> {
  return {
    forTask: async (task) => {
      if (!hasEnvironment(task.config)) return undefined;
      throw new TaskFailure(
        'setup_failed',
        'this repository configures an `environment:`, and this airlock has no environment builder',
      );
    },
  };
}

/** The lifecycle's runner before one is built: only a misconfigured composition reaches it. */
function unreachableRunner(): TaskRunner {
  return {
    run: async () => {
      throw new Error('no task runner: airlock was built without a sandbox or a runner');
    },
  };
}
