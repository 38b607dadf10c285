import { Probot } from 'probot';
import type { AuditSink } from './audit-sink.ts';
import { taskFinishedIntent } from './ci/ci-branch.ts';
import { handleCiResult } from './ci/ci-follow-up.ts';
import { CiVerdicts } from './ci/ci-verdicts.ts';
import type { Clock } from './clock.ts';
import { DeliveryLog } from './github/delivery-log.ts';
import { GitHubClient } from './github/github-client.ts';
import { GitHubJobQueue } from './github/github-jobs.ts';
import { GitHubReporter } from './github/github-reporter.ts';
import { IngressGate } from './github/ingress-gate.ts';
import type { OctokitTuning } from './github/octokit-factory.ts';
import { airlockProbotApp } from './github/probot-app.ts';
import { dispatchWebhooks } from './github/webhook-dispatch.ts';
import { INBOX_KEEP_DAYS, WebhookInbox } from './github/webhook-inbox.ts';
import { type WebhookListener, webhookListener } from './github/webhook-route.ts';
import type { Logger } from './logger.ts';
import type { Db } from './store/database.ts';
import { processPendingDeliveries } from './tasks/intake.ts';
import { type OrphanReaper, type RecoveryReport, recoverInFlightTasks } from './tasks/recovery.ts';
import { Scheduler } from './tasks/scheduler.ts';
import type { Task } from './tasks/task.ts';
import type { TaskRunner } from './tasks/task-runner.ts';
import { TaskStore } from './tasks/task-store.ts';
import { startWorkLoop, type WorkLoop } from './tasks/work-loop.ts';

const INBOX_PRUNE_INTERVAL_MS = 6 * 3600 * 1000;

/** Everything the control plane is built from; the composition root passes production parts. */
export interface ControlPlaneDeps {
  db: Db;
  clock: Clock;
  log: Logger;
  audit: AuditSink & { headHash?(taskId: string): string | undefined };
  github: { appId: number; privateKey: string; webhookSecret: string; apiUrl: string; appSlug: string };
  publicUrl: string;
  runner: TaskRunner;
  reaper: OrphanReaper;
  limits: { maxConcurrent: number; maxPerRepo: number };
  octokitTuning?: OctokitTuning;
  /** How often the background loops poll when not woken, in ms. */
  pollMs?: number;
  onTaskFinished?(task: Task): void;
}

/** The running control plane: webhook routes, queue, scheduler and GitHub reporting. */
export interface ControlPlane {
  /** The request listener for GitHub's deliveries (see startHttpServer). */
  webhooks: WebhookListener;
  tasks: TaskStore;
  deliveries: DeliveryLog;
  jobs: GitHubJobQueue;
  scheduler: Scheduler;
  githubClient: GitHubClient;
  recovery: RecoveryReport;
  /** Waits until deliveries, the scheduler and GitHub jobs have nothing left to do right now. */
  quiesce(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Builds and starts the control plane: recovers tasks a previous process left in flight, then
 * starts the intake loop (deliveries → tasks), the scheduler, and the GitHub job loop.
 */
export async function startControlPlane(deps: ControlPlaneDeps): Promise<ControlPlane> {
  const { db, clock, log } = deps;
  const tasks = new TaskStore(db, clock);
  const inbox = new WebhookInbox(db, clock);
  const deliveries = new DeliveryLog(db, clock);
  const jobs = new GitHubJobQueue(db, clock);
  const githubClient = new GitHubClient(
    { appId: deps.github.appId, privateKey: deps.github.privateKey, apiUrl: deps.github.apiUrl },
    log,
    deps.octokitTuning,
  );
  const verdicts = new CiVerdicts(db, clock);
  const reporter = new GitHubReporter({
    github: githubClient,
    tasks,
    publicUrl: deps.publicUrl,
    log,
    ciVerdict: (taskId) => verdicts.forTask(taskId),
    ...(deps.audit.headHash ? { auditHeadHash: (id: string) => deps.audit.headHash?.(id) } : {}),
  });

  const recovery = await recoverInFlightTasks({ tasks, reaper: deps.reaper, jobs, audit: deps.audit, log });

  let jobLoop: WorkLoop | undefined;
  let intakeLoop: WorkLoop | undefined;
  let dispatchLoop: WorkLoop | undefined;
  const scheduler = new Scheduler({
    tasks,
    runner: deps.runner,
    jobs: {
      enqueue: (job, refs) => {
        jobs.enqueue(job, refs);
        jobLoop?.wake();
      },
    },
    audit: deps.audit,
    log,
    limits: deps.limits,
    publish: reporter.publish,
    onFinished: (task) => {
      const recheck = taskFinishedIntent(tasks, task);
      if (recheck && deliveries.record(recheck) === 'recorded') intakeLoop?.wake();
      deps.onTaskFinished?.(task);
    },
  });
  const pollMs = deps.pollMs ?? 1000;
  // Acknowledging webhooks comes first: background work waits for gaps in a burst (bounded).
  const gate = new IngressGate();
  const execute: typeof reporter.execute = async (job) => {
    await gate.yield();
    return reporter.execute(job);
  };
  jobLoop = startWorkLoop('github-jobs', () => jobs.drain(execute, log), log, pollMs);
  intakeLoop = startWorkLoop(
    'intake',
    async () => {
      const n = await processPendingDeliveries({
        deliveries,
        tasks,
        jobs,
        github: githubClient,
        audit: deps.audit,
        log,
        cancelTask: (id, by) => scheduler.cancel(id, by),
        yieldToWebhooks: () => gate.yield(),
        onCiResult: (intent) =>
          handleCiResult(
            {
              tasks,
              verdicts,
              jobs,
              github: githubClient,
              audit: deps.audit,
              log,
              appSlug: deps.github.appSlug,
            },
            intent,
          ),
      });
      if (n > 0) jobLoop?.wake();
      scheduler.tick();
      return n;
    },
    log,
    pollMs,
  );

  const probot = new Probot({
    appId: deps.github.appId,
    privateKey: deps.github.privateKey,
    secret: deps.github.webhookSecret,
    baseUrl: deps.github.apiUrl,
    log: log.child({ name: 'probot' }),
  });
  await probot.load(
    airlockProbotApp({ deliveries, appSlug: () => deps.github.appSlug, wake: () => intakeLoop?.wake(), log }),
  );
  dispatchLoop = startWorkLoop('webhooks', () => dispatchWebhooks({ inbox, probot, log, gate }), log, pollMs);
  // The inbox keeps a dispatched delivery's row (without its body) as the dedupe record for a month,
  // and the delivery log its intent and outcome for as long.
  const pruneInbox = () => {
    const pruned = inbox.prune(INBOX_KEEP_DAYS);
    const processed = deliveries.prune(INBOX_KEEP_DAYS);
    if (pruned + processed > 0) log.info({ pruned, processed }, 'old webhook rows deleted');
  };
  pruneInbox();
  const pruneTimer = setInterval(pruneInbox, INBOX_PRUNE_INTERVAL_MS);
  pruneTimer.unref();
  const webhooks = webhookListener({
    inbox,
    stored: () => dispatchLoop?.wake(),
    secret: deps.github.webhookSecret,
    log,
    gate,
  });

  return {
    webhooks,
    tasks,
    deliveries,
    jobs,
    scheduler,
    githubClient,
    recovery,
    quiesce: async () => {
      for (let i = 0; i < 50; i++) {
        await dispatchLoop?.settled();
        await intakeLoop?.settled();
        await scheduler.idle();
        await jobLoop?.settled();
        const busy =
          inbox.waiting(1).length > 0 ||
          deliveries.pending(1).length > 0 ||
          tasks.queued(1).length > 0 ||
          scheduler.runningIds().length > 0;
        if (!busy && jobs.dueCount() === 0) return;
      }
    },
    stop: async () => {
      clearInterval(pruneTimer);
      await dispatchLoop?.stop();
      await intakeLoop?.stop();
      await scheduler.stop();
      await jobLoop?.stop();
    },
  };
}
