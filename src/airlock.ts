import path from 'node:path';
import { AuditLog } from './audit/audit-log.ts';
import { startRetention } from './audit/retention.ts';
import { type Clock, systemClock } from './clock.ts';
import type { AppConfig } from './config/app-config.ts';
import { modelUpstreams } from './config/model-upstreams.ts';
import type { EnvironmentBuilder } from './environments/environment-builder.ts';
import { EnvironmentStore } from './environments/environment-store.ts';
import { Environments } from './environments/environments.ts';
import { VmEnvironmentBuilder } from './environments/vm-environment-builder.ts';
import { errorMessage } from './errors.ts';
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
import { type Db, openDatabase, openSqliteStore, type Store } from './store/database.ts';
import { ApprovalStore } from './tasks/approval-store.ts';
import { HeldResults } from './tasks/held-results.ts';
import { pushGate } from './tasks/push-gate.ts';
import { isTerminal, splitRepo, type Task } from './tasks/task.ts';
import type { LifecycleDeps, StateListener } from './tasks/task-lifecycle.ts';
import type { TaskRunner } from './tasks/task-runner.ts';
import { TaskStore } from './tasks/task-store.ts';
import type { PromptThread } from './tasks/task-thread.ts';
import { VmTaskRunner } from './tasks/vm-task-runner.ts';

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
  db: Db;
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
  const db = openDatabase(path.join(settings.dataDir, 'airlock.sqlite'));
  const store = openSqliteStore(db);
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
  const metrics = new AirlockMetrics(store);
  audit.subscribe((event) => metrics.observeAuditEvent(event));
  const stopRetention = startRetention({ store, audit, clock, log }, { days: settings.retention.promptDays });
  const tasks = new TaskStore(store, clock);
  const policy = loadOperatorPolicy(settings.policyFile, ports.environment ?? {});
  const rulesFor = (repoFullName: string) => policyFor(policy, repoFullName);
  const secrets = resolveDestinationSecrets(policy.secrets, ports.environment ?? {});
  for (const secret of secrets.values()) {
    for (const value of [...secret.values, secret.headerValue]) ports.redactor.add(value);
  }
  const sandbox = ports.runner
    ? undefined
    : await (
        ports.openSandbox ??
        (() => openSandbox({ ...settings, maxVms: settings.scheduler.maxConcurrent, log }))
      )();

  const approvals = new ApprovalStore(store, clock);
  const held = new HeldResults(store, clock, settings.dataDir);
  const spend = new SpendLedger(store, clock, policy.prices);

  // The GitHub plane attaches its reporting to state changes once it exists; before it, what the
  // task spent is recorded once its proxy has closed (it ended, or waits for approval), from its
  // record, so what GitHub is told includes it; a held result goes when its task ends.
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
    onState: async (task) => {
      for (const listener of listeners) await listener(task);
    },
  };

  const gh = settings.github;
  const gitUrl =
    ports.repositories?.gitUrl ??
    ((owner: string, name: string) => `${gh?.webUrl.replace(/\/$/, '')}/${owner}/${name}.git`);
  const tokenDeps = gh
    ? { appId: gh.appId, privateKey: gh.privateKey, baseUrl: gh.apiUrl, redactor: ports.redactor }
    : undefined;
  const builder = ports.environmentBuilder ?? vmBuilder(sandbox?.sandbox);
  const environments = builder
    ? new Environments({
        store: new EnvironmentStore(store, clock),
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
  const promptThread = async (task: Task): Promise<PromptThread | undefined> => github?.promptThread(task);
  if (tokenDeps) {
    // Only with GitHub: local mode's branch goes to the person's own repository, unapproved.
    lifecycle.pushGate = pushGate({
      ...lifecycle,
      store,
      approvals,
      held,
      events: (taskId) => audit.events(taskId, { limit: 100_000 }, { types: ['vm.exec', 'proxy.egress'] }),
      credentialFor: (task) => {
        if (task.installationId === null) throw new Error(`task ${task.id} has no GitHub installation`);
        const { owner, repo } = splitRepo(task.repoFullName);
        return taskCredential(
          { ...tokenDeps, audit },
          { taskId: task.id, installationId: task.installationId, repository: { owner, name: repo } },
        );
      },
      gitUrl,
    });
  }
  if (sandbox && !ports.runner) {
    lifecycle.runner = new VmTaskRunner({
      sandbox: sandbox.sandbox,
      audit,
      log,
      dataDir: settings.dataDir,
      ...(tokenDeps ? { token: tokenDeps } : {}),
      ...(ports.repositories ? { credentialFor: ports.repositories.credentialFor } : {}),
      ...(environments ? { environments } : {}),
      gitUrl,
      models: ports.models ?? modelUpstreams(settings.models),
      app: { slug: () => github?.appSlug() ?? 'airlock' },
      promptThread,
      earlierTasks: (task) => tasks.onBranch(task.repoFullName, task.branch),
      modelFeatures: (task) => allowedModelFeatures(rulesFor(task.repoFullName), task.config),
      ...(gh ? { held } : {}),
      readRepositories: (task) => rulesFor(task.repoFullName).read_repositories,
      destinationSecrets: (task) => rulesFor(task.repoFullName).secrets.map((name) => secrets.get(name)!),
    });
  }

  if (settings.github) {
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
      reaper: sandbox?.sandbox ?? { reapOrphans: async () => [] },
      listeners,
      rulesFor,
      approvals,
      spend,
      held,
      ...(environments ? { environments } : {}),
      ...(sandbox ? { health: { accel: sandbox.accel.accel, image: sandbox.sandbox.imageDigest } } : {}),
      ...(ports.octokit ? { octokit: ports.octokit } : {}),
      ...(ports.pollMs ? { pollMs: ports.pollMs } : {}),
    });
  }

  // After the GitHub plane listens for builds that end: recovery may fail an interrupted one.
  await environments?.start();

  let stopped: Promise<void> | undefined;
  return {
    settings,
    log,
    clock,
    store,
    db,
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
    stop: () => {
      stopped ??= (async () => {
        await stopRetention();
        await github?.stop();
        await environments?.stop();
        await audit.flush();
        await checkpointer.stop();
        await store.close();
      })();
      return stopped;
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
