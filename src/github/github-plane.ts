import { Hono } from 'hono';
import type { AuditLog } from '../audit/audit-log.ts';
import { headToRecheck } from '../ci/ci-branch.ts';
import { ciHeadOf, handleCiResult } from '../ci/ci-follow-up.ts';
import { CiVerdicts } from '../ci/ci-verdicts.ts';
import type { Clock } from '../clock.ts';
import type { AppConfig } from '../config/app-config.ts';
import type { BuildQueue } from '../environments/build-queue.ts';
import { buildFailureJob } from '../environments/build-report.ts';
import type { EnvironmentStore } from '../environments/environment-store.ts';
import type { Environments } from '../environments/environments.ts';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { AirlockMetrics } from '../metrics/airlock-metrics.ts';
import type { EffectivePolicy } from '../policy/policy-for.ts';
import type { SpendLedger } from '../spend/spend-ledger.ts';
import { coalescedNotify } from '../store/coalesced-notify.ts';
import type { Store } from '../store/database.ts';
import type { ApprovalStore } from '../tasks/approval-store.ts';
import { decideApproval, expireApprovals } from '../tasks/approvals.ts';
import type { HeldResults } from '../tasks/held-results.ts';
import { processPendingDeliveries } from '../tasks/intake.ts';
import type { RecoveryReport } from '../tasks/recovery.ts';
import type { Task } from '../tasks/task.ts';
import type { LifecycleDeps, StateListener } from '../tasks/task-lifecycle.ts';
import type { TaskRuns } from '../tasks/task-runs.ts';
import type { TaskStore } from '../tasks/task-store.ts';
import { type PromptThread, promptThread } from '../tasks/task-thread.ts';
import { startWorkLoop, type WorkLoop } from '../tasks/work-loop.ts';
import { inSpan } from '../tracing/in-span.ts';
import { contextOf, spanContextOf } from '../tracing/trace-parent.ts';
import { type AirlockServer, startHttpServer } from '../web/http-server.ts';
import { webApp } from '../web/web-app.ts';
import { appIdentity } from './app-identity.ts';
import { hasWriteAccess } from './collaborator-permission.ts';
import { DELIVERIES_CHANNEL, DeliveryLog } from './delivery-log.ts';
import { GitHubClient } from './github-client.ts';
import {
  enqueueStateJobs,
  GITHUB_JOBS_CHANNEL,
  type GitHubJob,
  GitHubJobQueue,
  queueWithChange,
} from './github-jobs.ts';
import { GitHubReporter } from './github-reporter.ts';
import { IngressGate } from './ingress-gate.ts';
import type { OctokitTuning } from './octokit-factory.ts';
import { recordIntents } from './webhook-dispatch.ts';
import { INBOX_CHANNEL, INBOX_KEEP_DAYS, WebhookInbox } from './webhook-inbox.ts';
import { webhookListener } from './webhook-route.ts';

const INBOX_PRUNE_INTERVAL_MS = 6 * 3600 * 1000;

/** What the GitHub plane is built from (see buildAirlock). */
export interface GitHubPlaneDeps {
  settings: AppConfig;
  github: NonNullable<AppConfig['github']>;
  store: Store;
  clock: Clock;
  log: Logger;
  audit: AuditLog;
  tasks: TaskStore;
  metrics: AirlockMetrics;
  lifecycle: LifecycleDeps;
  /** Where queued tasks run (started once the webhook listener is up). */
  runs: TaskRuns;
  /** The lifecycle's state listeners: the plane adds GitHub reporting to them. */
  listeners: StateListener[];
  /** The operator policy in force for a repository. */
  rulesFor(repoFullName: string): EffectivePolicy;
  approvals: ApprovalStore;
  spend: SpendLedger;
  held: HeldResults;
  /**
   * Environment builds: queued by pushes and `/airlock rebuild`, shown on the web pages; those that
   * fail on this process (where it builds) reported on GitHub.
   */
  environments?: {
    queue: Pick<BuildQueue, 'enqueue' | 'wake'>;
    store: EnvironmentStore;
    log(buildId: string): Promise<string>;
    onBuildFinished?: Environments['onBuildFinished'];
  };
  health?: { accel: string; image: string };
  octokit?: OctokitTuning;
  pollMs?: number;
}

/** The running GitHub side of airlock. */
export interface GitHubPlane {
  server: AirlockServer;
  tasks: TaskStore;
  deliveries: DeliveryLog;
  inbox: WebhookInbox;
  jobs: GitHubJobQueue;
  /** Where tasks run: this process's scheduler, or workers leasing them. */
  runs: TaskRuns;
  client: GitHubClient;
  recovery: RecoveryReport;
  /** The app's slug once GitHub has told it (`airlock` until then). */
  appSlug(): string;
  /** The thread a task's prompt is built from (frozen text plus writers' later comments). */
  promptThread(task: Task): Promise<PromptThread | undefined>;
  stop(): Promise<void>;
}

/**
 * Starts the GitHub side, in the order that loses nothing: the webhook listener first (it needs
 * only the webhook secret, so deliveries are stored even while GitHub's API is unreachable), then
 * recovery of tasks a previous process left in flight, then the background loops. The app's
 * identity is fetched in the background with back-off; deliveries wait in the inbox until it is
 * known, since telling airlock's own comments from people's needs its slug.
 */
export async function startGitHubPlane(deps: GitHubPlaneDeps): Promise<GitHubPlane> {
  const { store, clock, log, settings, github, tasks } = deps;
  const { tracer } = deps.lifecycle;
  const pollMs = deps.pollMs ?? 1000;
  const inbox = new WebhookInbox(store, clock);
  const deliveries = new DeliveryLog(store, clock);
  const jobs = new GitHubJobQueue(store, clock);
  const verdicts = new CiVerdicts(store, clock);
  if (store.dialect === 'sqlite') {
    // One process owns an SQLite database: claims left in it are a previous process's.
    const released = (await deliveries.releaseClaims()) + (await jobs.releaseClaims());
    if (released > 0) log.info({ released }, 'claims of the previous process released');
  }
  const tuning = { fetch: deps.metrics.countGitHubErrors(), ...deps.octokit };
  const client = new GitHubClient(
    { appId: github.appId, privateKey: github.privateKey, apiUrl: github.apiUrl },
    log,
    tuning,
  );
  // Acknowledging webhooks comes first: background work waits for gaps in a burst (bounded).
  const gate = new IngressGate();
  const loops: WorkLoop[] = [];
  const wakeAll = () => {
    for (const loop of loops) loop.wake();
  };
  const identity = appIdentity({ github, log, clock, fetch: tuning.fetch, onKnown: wakeAll });

  const web = new Hono();
  web.get('/healthz', (c) =>
    c.json({ ok: true, github: identity.known() ? 'ok' : 'connecting', ...deps.health }),
  );
  web.route(
    '/',
    webApp({
      store: deps.store,
      audit: deps.audit,
      clock,
      log,
      publicUrl: settings.publicUrl,
      github: {
        webUrl: github.webUrl,
        apiUrl: github.apiUrl,
        clientId: github.clientId,
        clientSecret: github.clientSecret,
      },
      sessionSecret: settings.web.sessionSecret,
      sessionHours: settings.web.sessionHours,
      accessCacheSeconds: settings.web.accessCacheSeconds,
      adminToken: settings.adminToken,
      operators: settings.operators,
      metrics: deps.metrics,
      metricsPublic: settings.web.metricsPublic,
      fetch: tuning.fetch,
      ...(deps.environments ? { environments: deps.environments } : {}),
      approvals: {
        pending: async () =>
          Promise.all(
            (await deps.approvals.allPending()).map(async (approval) => ({
              approval,
              task: await tasks.get(approval.taskId),
            })),
          ),
        held: (taskId) => deps.held.get(taskId),
        spend: deps.spend,
        mayWrite: async (task, login) =>
          task.installationId !== null &&
          hasWriteAccess(await client.permission(task.installationId, task.repoFullName, login)),
        decide: (input) =>
          deps.store.transaction(() =>
            decideApproval({ ...deps.lifecycle, approvals: deps.approvals }, { ...input, channel: 'web' }),
          ),
      },
    }),
  );
  // Other processes on the database hear of a stored delivery too (folded: one notification at a
  // time); this one wakes its loops at once.
  const announceStored = coalescedNotify(store, INBOX_CHANNEL, (error) =>
    log.warn({ err: errorMessage(error) }, 'stored webhooks could not be announced'),
  );
  const stored = () => {
    wakeAll();
    announceStored();
  };
  const server = await startHttpServer({
    host: settings.host,
    port: settings.port,
    webhooks: webhookListener({ inbox, stored, secret: github.webhookSecret, log, gate, tracer }),
    fetch: web.fetch,
  });

  const reporter = new GitHubReporter({
    github: client,
    tasks,
    publicUrl: settings.publicUrl,
    log,
    ciVerdict: async (taskId) => verdicts.forTask(taskId),
    auditHeadHash: async (taskId) => deps.audit.headHash(taskId),
    approval: (taskId) => deps.approvals.pending(taskId),
    spend: (taskId) => deps.spend.ofTask(taskId),
  });
  const ciDeps = { store, tasks, verdicts, jobs, github: client, audit: deps.audit, log };
  const execute = async (job: GitHubJob): Promise<void> => {
    await gate.yield();
    // A task's reporting jobs are spans of its trace; the others (replies to refused deliveries)
    // start their own. A CI recheck starts its own too, linked to the task's: a CI fix it starts
    // is a task with a trace of its own.
    const taskId = 'taskId' in job ? job.taskId : undefined;
    const taskTrace = taskId ? (await tasks.find(taskId))?.context.traceParent : undefined;
    const recheck = job.kind === 'ci_recheck';
    const linked = recheck ? spanContextOf(taskTrace) : undefined;
    const attributes = { 'airlock.github.job': job.kind, ...(taskId ? { 'airlock.task.id': taskId } : {}) };
    const options = {
      parent: contextOf(recheck ? undefined : taskTrace),
      attributes,
      ...(linked ? { links: [{ context: linked }] } : {}),
    };
    await inSpan(tracer, 'github.job', options, async () => {
      if (job.kind !== 'ci_recheck') return reporter.execute(job);
      const head = await headToRecheck(tasks, await tasks.get(job.taskId));
      if (head) await handleCiResult({ ...ciDeps, appSlug: identity.slug() }, head);
    });
  };
  // Listeners are called synchronously: inside a transaction, the jobs they queue join it just
  // before it commits, and the loops are woken once it has (a loop woken inside would run its step
  // in the transaction's context); outside one, the jobs are queued at once (a failure is logged).
  const queueFromListener = (what: string, queue: () => Promise<unknown>) => {
    queueWithChange(store, log, what, queue);
    store.afterCommit(wakeAll);
  };
  // What GitHub hears of a task follows its state: the tracking comment and check run are
  // rendered from the task when the job runs; a task that ends may let CI be judged again.
  deps.listeners.push((task) => queueFromListener(`task ${task.id}`, () => enqueueStateJobs(jobs, task)));
  deps.lifecycle.publish = reporter.publish;
  // A build that failed here is reported on GitHub (a worker's builds: by that worker).
  deps.environments?.onBuildFinished?.((build) => {
    const job = buildFailureJob(build, settings.publicUrl);
    if (job) queueFromListener(`build ${build.id}`, () => jobs.enqueue(job));
  });
  const approvalDeps = { ...deps.lifecycle, approvals: deps.approvals };
  const runs = deps.runs;
  const recovery = await runs.start();
  const jobLoop = startWorkLoop(
    'github-jobs',
    (signal) => jobs.drain(execute, log, 100, signal),
    log,
    pollMs,
  );
  const intentLoop = startWorkLoop(
    'webhooks',
    async () =>
      identity.known()
        ? recordIntents({ store, inbox, deliveries, appSlug: identity.slug(), log, gate, tracer })
        : 0,
    log,
    pollMs,
  );
  const intakeLoop = startWorkLoop(
    'intake',
    async () => {
      // Waiting tasks whose time is up end here, on the injected clock.
      const expired = await expireApprovals(approvalDeps);
      const n = await processPendingDeliveries({
        store,
        deliveries,
        tasks,
        jobs,
        github: client,
        audit: deps.audit,
        log,
        cancelTask: (id, by) => runs.cancel(id, by),
        rulesFor: deps.rulesFor,
        approvals: deps.approvals,
        appLogin: () => `${identity.slug()}[bot]`,
        spendCapReached: (repo) => deps.spend.capReached(repo, deps.rulesFor(repo).spend),
        ...(deps.lifecycle.onState ? { onState: deps.lifecycle.onState } : {}),
        yieldToWebhooks: () => gate.yield(),
        tracer,
        onCiResult: (intent) => handleCiResult({ ...ciDeps, appSlug: identity.slug() }, ciHeadOf(intent)),
        ...(deps.environments ? { environments: deps.environments.queue } : {}),
      });
      if (n > 0 || expired.length > 0) jobLoop.wake();
      if (identity.known()) await runs.tick();
      return n + expired.length;
    },
    log,
    pollMs,
  );
  loops.push(intentLoop, intakeLoop, jobLoop);
  // Work another process queued on the database wakes this one's loop at once; polling stays.
  const unlisten = [
    await store.listen(INBOX_CHANNEL, () => intentLoop.wake()),
    await store.listen(DELIVERIES_CHANNEL, () => intakeLoop.wake()),
    await store.listen(GITHUB_JOBS_CHANNEL, () => jobLoop.wake()),
  ];

  // The inbox keeps a dispatched delivery's row (without its body) as the dedupe record for a month,
  // and the delivery log its intent and outcome for as long.
  const pruneInbox = async () => {
    const pruned = await inbox.prune(INBOX_KEEP_DAYS);
    const processed = await deliveries.prune(INBOX_KEEP_DAYS);
    if (pruned + processed > 0) log.info({ pruned, processed }, 'old webhook rows deleted');
  };
  await pruneInbox();
  const pruneTimer = setInterval(
    () =>
      void pruneInbox().catch((error) =>
        log.warn({ err: errorMessage(error) }, 'old webhook rows could not be deleted'),
      ),
    INBOX_PRUNE_INTERVAL_MS,
  );
  pruneTimer.unref();

  return {
    server,
    tasks,
    deliveries,
    inbox,
    jobs,
    runs,
    client,
    recovery,
    appSlug: identity.slug,
    promptThread: async (task) => {
      if (!task.thread || task.installationId === null) return undefined;
      const number = task.prNumber ?? task.issueNumber;
      if (number === null) return undefined;
      const thread = await client.issueThread(task.installationId, task.repoFullName, number);
      // airlock's own comments (the tracking comment) are neither the request nor a change to it.
      const self = `${identity.slug()}[bot]`;
      const current = { ...thread, comments: thread.comments.filter((c) => c.author !== self) };
      const known = new Set(task.thread.comments.map((c) => c.id));
      const mayWrite = new Set<string>();
      for (const author of new Set(current.comments.filter((c) => !known.has(c.id)).map((c) => c.author))) {
        const permission = await client.permission(task.installationId, task.repoFullName, author);
        if (hasWriteAccess(permission)) mayWrite.add(author);
      }
      const result = promptThread(task.thread, current, mayWrite);
      if (result.editedAfterTrigger || result.leftOut.length) {
        const threadChanged = { edited: result.editedAfterTrigger, leftOut: result.leftOut.length };
        await tasks.update(task.id, { context: { ...(await tasks.get(task.id)).context, threadChanged } });
        await jobs.enqueue({ kind: 'tracking', taskId: task.id });
      }
      return result;
    },
    stop: async () => {
      clearInterval(pruneTimer);
      for (const stopListening of unlisten) await stopListening();
      identity.stop();
      // Not awaited: live-update streams would hold it open; the process exits after stop.
      void server.close();
      await intentLoop.stop();
      await intakeLoop.stop();
      await runs.stop();
      await jobLoop.stop();
    },
  };
}
