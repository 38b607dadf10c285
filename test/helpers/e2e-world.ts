import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type Airlock, buildAirlock } from '../../src/airlock.ts';
import type { AuditLog } from '../../src/audit/audit-log.ts';
import type { OctokitTuning } from '../../src/github/octokit-factory.ts';
import type { ModelUpstreams } from '../../src/proxy/model-proxy.ts';
import { hostTscKhz } from '../../src/sandbox/accel-probe.ts';
import { MicroVmSandbox } from '../../src/sandbox/microvm-sandbox.ts';
import type { Sandbox } from '../../src/sandbox/sandbox.ts';
import { SecretRedactor } from '../../src/secrets.ts';
import type { Db, Store } from '../../src/store/database.ts';
import type { Task } from '../../src/tasks/task.ts';
import { type GitHubEmulator, startGitHubEmulator } from '../emulator/index.ts';
import { installationRemote, type PlaneView } from './control-plane-harness.ts';
import { pushCommit } from './git-push.ts';
import { memoryLogger } from './memory-logger.ts';
import { settled } from './settled.ts';
import { emulatorOctokit, emulatorSettings } from './test-settings.ts';
import { testSnapshotDir, testVmImage } from './vm-image.ts';
import { waitFor } from './wait-for.ts';
import { examplePayload } from './webhook-examples.ts';

/**
 * Everything an end-to-end test needs, real from the webhook to the PR: the GitHub emulator with
 * repository `acme/widgets` (writer `alice`), airlock built as production builds it (buildAirlock)
 * serving signed webhooks on loopback, and its tasks on real microVMs (TCG here).
 */
export interface E2eWorld {
  gh: GitHubEmulator;
  /** The airlock running now (a restart replaces it). */
  airlock: Airlock;
  plane: PlaneView;
  audit: AuditLog;
  db: Db;
  store: Store;
  /** Its data directory (database, environments, VMs), kept across restarts. */
  dataDir: string;
  installationId: number;
  /** Signs and POSTs a webhook to the app; throws unless it is accepted. */
  send(event: string, payload: unknown, deliveryId: string): Promise<void>;
  /**
   * Opens an issue as alice, labels it `airlock` by webhook and waits (10 minutes unless told) for
   * the task to end (or to reach one of `until`).
   */
  labelIssue(
    title: string,
    body: string,
    options?: { until?: readonly Task['state'][]; timeoutMs?: number },
  ): Promise<Task>;
  /** Commits `files` to main as alice and sends the push webhook GitHub would; returns the sha. */
  pushToMain(files: Record<string, string>, message: string): Promise<string>;
  /**
   * Stops airlock, runs `between` (say, another airlock process on the same data directory and
   * port), and builds airlock again on the same data directory and port, as a restart would.
   */
  restart(between?: (at: { dataDir: string; port: number }) => Promise<void>): Promise<void>;
  close(): Promise<void>;
}

export async function startE2eWorld(options: {
  files: Record<string, string>;
  appSlug?: string;
  models?: ModelUpstreams;
  /** Lets a test observe the real sandbox (for example, scan a VM before it is destroyed). */
  wrapSandbox?: (sandbox: Sandbox) => Sandbox;
  /** Boot every VM cold instead of restoring it from the shared base snapshot. */
  coldBoots?: boolean;
  /** Restored, paused VMs kept per snapshot (AIRLOCK_WARM_POOL); none unless told. */
  warmPool?: number;
  /** VMs at once on the host, builds' included (production's is AIRLOCK_MAX_CONCURRENT_TASKS); none unless told. */
  maxVms?: number;
  /** The accelerator (benches pass the probed one; tests run under TCG). */
  accel?: 'kvm' | 'tcg';
  /** Octokit's tuning (default: the emulator's, without GitHub's spacing of writes). */
  octokit?: OctokitTuning;
  /** More settings, as environment variables (AIRLOCK_DEBIAN_SOURCES or OTEL_EXPORTER_OTLP_ENDPOINT, say). */
  env?: Record<string, string>;
}): Promise<E2eWorld> {
  const gh = await startGitHubEmulator({ appSlug: options.appSlug ?? 'airlock-e2e' });
  await gh.createRepo('acme', 'widgets', { files: options.files });
  gh.addUser('alice', { id: 101 });
  gh.setPermission('acme/widgets', 'alice', 'write');
  const installationId = gh.installApp('acme');
  const dir = await mkdtemp(path.join(tmpdir(), 'airlock-e2e-'));
  const redactor = new SecretRedactor();
  const { log } = memoryLogger(redactor);
  let port = 0;
  const boot = () =>
    buildAirlock(
      emulatorSettings(gh, dir, {
        AIRLOCK_MAX_CONCURRENT_TASKS: '1',
        AIRLOCK_ACCEL: options.accel ?? 'tcg',
        PORT: String(port),
        ...options.env,
      }),
      {
        log,
        redactor,
        openSandbox: async () => {
          const image = testVmImage();
          const real = new MicroVmSandbox({
            image,
            accel: options.accel ?? 'tcg',
            dataDir: dir,
            log,
            tscKhz: hostTscKhz(),
            ...(options.coldBoots ? {} : { snapshotDir: testSnapshotDir(image) }),
            ...(options.warmPool ? { warmPool: options.warmPool } : {}),
            ...(options.maxVms ? { maxVms: options.maxVms } : {}),
          });
          return {
            sandbox: options.wrapSandbox ? options.wrapSandbox(real) : real,
            accel: { accel: options.accel ?? 'tcg', reason: 'chosen by the test' },
          };
        },
        models: options.models ?? {},
        octokit: options.octokit ?? emulatorOctokit,
        pollMs: 100,
      },
    );
  let airlock = await boot();
  const view = (a: Airlock): PlaneView =>
    Object.assign(Object.create(a.github!), { quiesce: () => settled(a) });
  let plane = view(airlock);
  // A restart listens on the same port, as a restarted process would.
  port = airlock.github!.server.port;
  const webhookUrl = airlock.github!.server.webhookUrl;
  let deliveries = 0;

  return {
    gh,
    get airlock() {
      return airlock;
    },
    get plane() {
      return plane;
    },
    get audit() {
      return airlock.audit;
    },
    get db() {
      return airlock.store.sqlite!;
    },
    get store() {
      return airlock.store;
    },
    dataDir: dir,
    installationId,
    async send(event, payload, deliveryId) {
      const answer = await gh.sendWebhook(webhookUrl, event, payload, { deliveryId });
      if (answer.status !== 200) throw new Error(`webhook answered ${answer.status}`);
    },
    async labelIssue(title, body, { until = TERMINAL, timeoutMs = 600_000 } = {}) {
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
        async () =>
          (await plane.tasks.list()).find((t) => t.issueNumber === issue.number && until.includes(t.state)),
        timeoutMs,
        'the task to finish',
      );
      await settled(airlock);
      return plane.tasks.get(task.id);
    },
    async pushToMain(files, message) {
      const sha = await pushCommit({
        remote: await installationRemote(gh, installationId, 'acme/widgets'),
        base: 'main',
        branch: 'main',
        files,
        message,
      });
      const payload = examplePayload('push', null, {
        repo: { id: 1, fullName: 'acme/widgets' },
        sender: { login: 'alice', id: 101 },
        installationId,
      });
      Object.assign(payload, { ref: 'refs/heads/main', after: sha, forced: false, deleted: false });
      payload.commits = [{ ...payload.commits?.[0], added: [], removed: [], modified: Object.keys(files) }];
      const answer = await gh.sendWebhook(webhookUrl, 'push', payload, { deliveryId: `push-${sha}` });
      if (answer.status !== 200) throw new Error(`webhook answered ${answer.status}`);
      return sha;
    },
    async restart(between) {
      await airlock.stop();
      await between?.({ dataDir: dir, port });
      airlock = await boot();
      plane = view(airlock);
    },
    async close() {
      await airlock.stop();
      await gh.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

const TERMINAL: readonly Task['state'][] = ['succeeded', 'failed', 'cancelled', 'timed_out'];
