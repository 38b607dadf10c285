import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AuditLog } from '../../src/audit/audit-log.ts';
import { systemClock } from '../../src/clock.ts';
import { type ControlPlane, startControlPlane } from '../../src/control-plane.ts';
import type { ModelUpstreams } from '../../src/proxy/model-proxy.ts';
import { hostTscKhz } from '../../src/sandbox/accel-probe.ts';
import { MicroVmSandbox } from '../../src/sandbox/microvm-sandbox.ts';
import type { Sandbox } from '../../src/sandbox/sandbox.ts';
import { SecretRedactor } from '../../src/secrets.ts';
import { type Db, openDatabase } from '../../src/store/database.ts';
import type { Task } from '../../src/tasks/task.ts';
import { TaskStore } from '../../src/tasks/task-store.ts';
import { VmTaskRunner } from '../../src/tasks/vm-task-runner.ts';
import { startHttpServer } from '../../src/web/http-server.ts';
import { type GitHubEmulator, startGitHubEmulator } from '../emulator/index.ts';
import { memoryLogger } from './memory-logger.ts';
import { testVmImage } from './vm-image.ts';
import { waitFor } from './wait-for.ts';
import { examplePayload } from './webhook-examples.ts';

/**
 * Everything an end-to-end test needs, real from the webhook to the PR: the GitHub emulator with
 * repository `acme/widgets` (writer `alice`), the control plane serving signed webhooks on
 * loopback, and the VM task runner on real microVMs (TCG here).
 */
export interface E2eWorld {
  gh: GitHubEmulator;
  plane: ControlPlane;
  audit: AuditLog;
  db: Db;
  installationId: number;
  /** Signs and POSTs a webhook to the app; throws unless it is accepted. */
  send(event: string, payload: unknown, deliveryId: string): Promise<void>;
  /** Opens an issue as alice, labels it `airlock` by webhook and waits for the task to end. */
  labelIssue(title: string, body: string): Promise<Task>;
  close(): Promise<void>;
}

export async function startE2eWorld(options: {
  files: Record<string, string>;
  appSlug?: string;
  models?: ModelUpstreams;
  /** Lets a test observe the real sandbox (for example, scan a VM before it is destroyed). */
  wrapSandbox?: (sandbox: Sandbox) => Sandbox;
}): Promise<E2eWorld> {
  const gh = await startGitHubEmulator({ appSlug: options.appSlug ?? 'airlock-e2e' });
  await gh.createRepo('acme', 'widgets', { files: options.files });
  gh.addUser('alice', { id: 101 });
  gh.setPermission('acme/widgets', 'alice', 'write');
  const installationId = gh.installApp('acme');
  const dir = await mkdtemp(path.join(tmpdir(), 'airlock-e2e-'));
  const db = openDatabase(path.join(dir, 'airlock.sqlite'));
  const redactor = new SecretRedactor();
  const { log } = memoryLogger(redactor);
  const audit = new AuditLog(db, systemClock, redactor);
  const real = new MicroVmSandbox({
    image: testVmImage(),
    accel: 'tcg',
    dataDir: dir,
    log,
    tscKhz: hostTscKhz(),
  });
  const sandbox = options.wrapSandbox ? options.wrapSandbox(real) : real;
  const tasks = new TaskStore(db, systemClock);
  const runner = new VmTaskRunner({
    sandbox,
    audit,
    log,
    dataDir: dir,
    token: { appId: gh.app.id, privateKey: gh.app.privateKey, baseUrl: gh.apiUrl, redactor },
    gitUrl: (owner, name) => gh.gitUrl(owner, name),
    models: options.models ?? {},
    app: { slug: gh.app.slug },
    issueThread: async (task) => {
      const issue = gh.state.issues.find((i) => i.number === task.issueNumber)!;
      return { title: issue.title, body: issue.body, author: issue.user, comments: [] };
    },
    earlierTasks: (task) => tasks.onBranch(task.repoFullName, task.branch),
  });
  const plane = await startControlPlane({
    db,
    clock: systemClock,
    log,
    audit,
    github: {
      appId: gh.app.id,
      privateKey: gh.app.privateKey,
      webhookSecret: gh.app.webhookSecret,
      apiUrl: gh.apiUrl,
      appSlug: gh.app.slug,
    },
    publicUrl: 'http://airlock.test',
    runner,
    reaper: sandbox,
    limits: { maxConcurrent: 1, maxPerRepo: 1 },
    octokitTuning: { retryBaseMs: 5 },
    pollMs: 100,
  });
  const server = await startHttpServer({ host: '127.0.0.1', port: 0, webhooks: plane.webhooks });
  const webhookUrl = server.webhookUrl;
  let deliveries = 0;

  return {
    gh,
    plane,
    audit,
    db,
    installationId,
    async send(event, payload, deliveryId) {
      const answer = await gh.sendWebhook(webhookUrl, event, payload, { deliveryId });
      if (answer.status !== 200) throw new Error(`webhook answered ${answer.status}`);
    },
    async labelIssue(title, body) {
      const issue = gh.createIssue('acme/widgets', { title, body, user: 'alice' });
      const payload = examplePayload('issues', 'labeled', {
        repo: { id: 1, fullName: 'acme/widgets' },
        sender: { login: 'alice', id: 101 },
        installationId,
      });
      payload.issue = { ...payload.issue, number: issue.number, title, pull_request: undefined };
      payload.label = { ...payload.label, name: 'airlock' };
      const deliveryId = `e2e-${++deliveries}`;
      const answer = await gh.sendWebhook(webhookUrl, 'issues', payload, { deliveryId });
      if (answer.status !== 200) throw new Error(`webhook answered ${answer.status}`);
      const task = await waitFor(
        () =>
          plane.tasks
            .list()
            .find(
              (t) =>
                t.issueNumber === issue.number &&
                ['succeeded', 'failed', 'cancelled', 'timed_out'].includes(t.state),
            ),
        600_000,
        'the task to finish',
      );
      await plane.quiesce();
      return task;
    },
    async close() {
      await plane.stop();
      server.close();
      db.close();
      await gh.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
