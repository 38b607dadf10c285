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
import type { PlaneView } from './control-plane-harness.ts';
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
  airlock: Airlock;
  plane: PlaneView;
  audit: AuditLog;
  db: Db;
  store: Store;
  installationId: number;
  /** Signs and POSTs a webhook to the app; throws unless it is accepted. */
  send(event: string, payload: unknown, deliveryId: string): Promise<void>;
  /**
   * Opens an issue as alice, labels it `airlock` by webhook and waits for the task to end (or to
   * reach one of `until`).
   */
  labelIssue(title: string, body: string, until?: readonly Task['state'][]): Promise<Task>;
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
  /** Octokit's tuning (default: the emulator's, without GitHub's spacing of writes). */
  octokit?: OctokitTuning;
}): Promise<E2eWorld> {
  const gh = await startGitHubEmulator({ appSlug: options.appSlug ?? 'airlock-e2e' });
  await gh.createRepo('acme', 'widgets', { files: options.files });
  gh.addUser('alice', { id: 101 });
  gh.setPermission('acme/widgets', 'alice', 'write');
  const installationId = gh.installApp('acme');
  const dir = await mkdtemp(path.join(tmpdir(), 'airlock-e2e-'));
  const redactor = new SecretRedactor();
  const { log } = memoryLogger(redactor);
  const airlock = await buildAirlock(emulatorSettings(gh, dir, { AIRLOCK_MAX_CONCURRENT_TASKS: '1' }), {
    log,
    redactor,
    openSandbox: async () => {
      const image = testVmImage();
      const real = new MicroVmSandbox({
        image,
        accel: 'tcg',
        dataDir: dir,
        log,
        tscKhz: hostTscKhz(),
        ...(options.coldBoots ? {} : { snapshotDir: testSnapshotDir(image) }),
      });
      return {
        sandbox: options.wrapSandbox ? options.wrapSandbox(real) : real,
        accel: { accel: 'tcg', reason: 'tests run under TCG' },
      };
    },
    models: options.models ?? {},
    octokit: options.octokit ?? emulatorOctokit,
    pollMs: 100,
  });
  const github = airlock.github!;
  const plane: PlaneView = Object.assign(Object.create(github), { quiesce: () => settled(airlock) });
  const { audit, db, store } = airlock;
  const webhookUrl = github.server.webhookUrl;
  let deliveries = 0;

  return {
    gh,
    airlock,
    plane,
    audit,
    db,
    store,
    installationId,
    async send(event, payload, deliveryId) {
      const answer = await gh.sendWebhook(webhookUrl, event, payload, { deliveryId });
      if (answer.status !== 200) throw new Error(`webhook answered ${answer.status}`);
    },
    async labelIssue(title, body, until = ['succeeded', 'failed', 'cancelled', 'timed_out']) {
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
        600_000,
        'the task to finish',
      );
      await settled(airlock);
      return plane.tasks.get(task.id);
    },
    async close() {
      await airlock.stop();
      await gh.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}
