import path from 'node:path';
import { Hono } from 'hono';
import type { RunningAirlock } from './app.ts';
import { AuditLog } from './audit/audit-log.ts';
import { startRetention } from './audit/retention.ts';
import { systemClock } from './clock.ts';
import type { AppConfig } from './config/app-config.ts';
import { modelUpstreams } from './config/model-upstreams.ts';
import { startControlPlane } from './control-plane.ts';
import { ConfigError, errorMessage } from './errors.ts';
import { appOctokit } from './github/octokit-factory.ts';
import type { Logger } from './logger.ts';
import { AirlockMetrics } from './metrics/airlock-metrics.ts';
import { openSandbox } from './sandbox/open-sandbox.ts';
import type { SecretRedactor } from './secrets.ts';
import { startCheckpointer } from './store/checkpointer.ts';
import { openDatabase } from './store/database.ts';
import { TaskStore } from './tasks/task-store.ts';
import { VmTaskRunner } from './tasks/vm-task-runner.ts';
import { startHttpServer } from './web/http-server.ts';
import { webApp } from './web/web-app.ts';

/** Events a group commit holds at most before committing early. */
const AUDIT_GROUP_COMMIT_MAX_EVENTS = 512;

/** Builds and starts every part of a configured airlock: the composition root's second half. */
export async function startFullAirlock(
  config: AppConfig,
  parts: { log: Logger; redactor: SecretRedactor },
): Promise<RunningAirlock> {
  const { log, redactor } = parts;
  const github = config.github;
  if (!github) throw new ConfigError('GitHub App credentials are required');

  const db = openDatabase(path.join(config.dataDir, 'airlock.sqlite'));
  const checkpointer = startCheckpointer(db, log);
  const audit = new AuditLog(db, systemClock, redactor, {
    keepConversation: config.retention.promptDays !== 0,
    // Bursts (exec audit, agent output, proxy traffic from several VMs) commit once per event-loop turn.
    groupCommit: { maxEvents: AUDIT_GROUP_COMMIT_MAX_EVENTS },
    onError: (error) => log.error({ err: errorMessage(error) }, 'audit events could not be stored'),
  });
  const metrics = new AirlockMetrics(db);
  audit.subscribe((event) => metrics.observeAuditEvent(event));
  const stopRetention = startRetention(
    { db, audit, clock: systemClock, log },
    { days: config.retention.promptDays },
  );
  const { sandbox, accel } = await openSandbox({
    cacheDir: config.cacheDir,
    dataDir: config.dataDir,
    accel: config.accel,
    log,
  });

  const { data: app } = await appOctokit({
    appId: github.appId,
    privateKey: github.privateKey,
    apiUrl: github.apiUrl,
  }).rest.apps.getAuthenticated();
  const appSlug = app?.slug ?? 'airlock';
  const webUrl = github.webUrl.replace(/\/$/, '');
  const models = modelUpstreams(config.models);
  const tasks = new TaskStore(db, systemClock);
  let threadReader:
    | ((
        installationId: number,
        repo: string,
        issue: number,
      ) => Promise<import('./tasks/task-prompt.ts').IssueThread>)
    | undefined;
  const runner = new VmTaskRunner({
    sandbox,
    audit,
    log,
    dataDir: config.dataDir,
    token: { appId: github.appId, privateKey: github.privateKey, baseUrl: github.apiUrl, redactor },
    gitUrl: (owner, name) => `${webUrl}/${owner}/${name}.git`,
    models,
    app: { slug: appSlug },
    issueThread: async (task) => {
      const number = task.issueNumber ?? task.prNumber;
      if (number === null || task.installationId === null || !threadReader) return undefined;
      return threadReader(task.installationId, task.repoFullName, number);
    },
    earlierTasks: (task) => tasks.onBranch(task.repoFullName, task.branch),
  });

  const plane = await startControlPlane({
    db,
    clock: systemClock,
    log,
    audit,
    github: {
      appId: github.appId,
      privateKey: github.privateKey,
      webhookSecret: github.webhookSecret,
      apiUrl: github.apiUrl,
      appSlug,
    },
    publicUrl: config.publicUrl,
    runner,
    reaper: sandbox,
    limits: config.scheduler,
    octokitTuning: { fetch: metrics.countGitHubErrors() },
  });
  threadReader = (installationId, repo, issue) => plane.githubClient.issueThread(installationId, repo, issue);
  log.info(
    {
      reaped: plane.recovery.reapedVms.length,
      requeued: plane.recovery.requeued.length,
      failed: plane.recovery.failed.length,
    },
    'recovered in-flight tasks',
  );

  const web = new Hono();
  web.get('/healthz', (c) => c.json({ ok: true, accel: accel.accel, image: sandbox.imageDigest }));
  web.route(
    '/',
    webApp({
      db,
      audit,
      clock: systemClock,
      log,
      publicUrl: config.publicUrl,
      github: {
        webUrl: github.webUrl,
        apiUrl: github.apiUrl,
        clientId: github.clientId,
        clientSecret: github.clientSecret,
      },
      sessionSecret: config.web.sessionSecret,
      sessionHours: config.web.sessionHours,
      accessCacheSeconds: config.web.accessCacheSeconds,
      adminToken: config.adminToken,
      metrics,
      metricsPublic: config.web.metricsPublic,
      fetch: metrics.countGitHubErrors(),
    }),
  );
  const server = await startHttpServer({
    host: config.host,
    port: config.port,
    webhooks: plane.webhooks,
    fetch: web.fetch,
  });
  const port = server.port;
  log.info({ port, app: appSlug, webhooks: `${config.publicUrl}/api/github/webhooks` }, 'airlock is running');

  const stop = async () => {
    stopRetention();
    // Not awaited: live-update streams would hold it open; the process exits after stop.
    void server.close();
    await plane.stop();
    audit.flush();
    await checkpointer.stop();
    db.close();
  };
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      log.info({ signal }, 'stopping: cancelling running tasks, destroying their VMs, revoking their tokens');
      stop().then(() => process.exit(0));
    });
  }
  return { config, log, stop };
}
