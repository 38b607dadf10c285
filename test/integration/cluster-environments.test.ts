import { afterEach, describe, expect, it } from 'vitest';
import type { Airlock } from '../../src/airlock.ts';
import { DEFAULT_REPO_CONFIG } from '../../src/config/repo-config.ts';
import { type EnvironmentRecord, EnvironmentStore } from '../../src/environments/environment-store.ts';
import type { TaskRunner } from '../../src/tasks/task-runner.ts';
import { ControlPlaneClient } from '../../src/workers/control-channel.ts';
import { type Cluster, startCluster, WORKER_SECRET, type WorkerRunnerDouble } from '../helpers/cluster.ts';
import { installationRemote } from '../helpers/control-plane-harness.ts';
import { DirectoryBuilder } from '../helpers/directory-builder.ts';
import { pushCommit } from '../helpers/git-push.ts';
import { waitFor } from '../helpers/wait-for.ts';
import { examplePayload } from '../helpers/webhook-examples.ts';

// Environments on several hosts (issue 14 with issue 16): a snapshot restores only where it was
// made, so each worker builds and keeps its own; the control plane only queues builds. The
// builder here is the directory double (the VM builder is exercised by test/e2e/environments and,
// across processes, by test/e2e/cluster-vm); the database, control plane, workers, the build
// token's channel and the GitHub reporting are the product's own.

const WAIT_MS = 30_000;
const CONFIG = 'environment:\n  setup: [npm ci]\n';

let cluster: Cluster;
afterEach(async () => {
  await cluster?.close();
});

/** Which environment each task restored. */
const got = new Map<string, EnvironmentRecord | undefined>();

function restoring(double: WorkerRunnerDouble, airlock: () => Airlock): TaskRunner {
  return {
    async run(task, ctx) {
      const lease = await airlock().environments!.forTask(task, ctx.signal);
      try {
        got.set(task.id, lease?.env);
        return await double.run(task, ctx);
      } finally {
        lease?.release();
      }
    },
  };
}

/** A worker that builds environments with its own build token, minted by the control plane. */
async function worker(name: string) {
  const builder = new DirectoryBuilder(async (repo, buildId) => {
    const client = new ControlPlaneClient({ url: cluster.controlUrl, secret: WORKER_SECRET, workerId: name });
    const { token } = await client.mintBuildToken(buildId);
    return `${cluster.gh.webUrl.replace('http://', `http://x-access-token:${token}@`)}/${repo}.git`;
  });
  const started = await cluster.startWorker(name, { environmentBuilder: builder, wrap: restoring });
  return { ...started, builder };
}

async function configure(files: Record<string, string>): Promise<string> {
  const remote = await installationRemote(cluster.gh, cluster.installationId, 'acme/widgets');
  return pushCommit({ remote, base: 'main', branch: 'main', files });
}

/** Pushes a change to package-lock.json on main and sends its push webhook; returns the commit. */
async function pushKeyFile(deliveryId: string): Promise<string> {
  const sha = await configure({ 'package-lock.json': `{"lockfileVersion":3,"v":"${deliveryId}"}\n` });
  const payload = examplePayload('push', null, {
    repo: { id: 1, fullName: 'acme/widgets' },
    sender: { login: 'alice', id: 101, type: 'User' },
    installationId: cluster.installationId,
  });
  Object.assign(payload, { ref: 'refs/heads/main', after: sha, forced: false, deleted: false });
  payload.commits = [{ ...payload.commits?.[0], added: [], removed: [], modified: ['package-lock.json'] }];
  const answer = await cluster.gh.sendWebhook(
    cluster.controls[0]!.github!.server.webhookUrl,
    'push',
    payload,
    {
      deliveryId,
    },
  );
  if (!answer.ok) throw new Error(`the push webhook was answered ${answer.status}`);
  return sha;
}

/** Every host's builds and environments, as the control plane's pages read them. */
const builds = () => new EnvironmentStore(cluster.controls[0]!.store, cluster.controls[0]!.clock);

/** A worker's row as a worker on another host writes it. */
const workerRow = (id: string) => ({ id, host: `${id}-host`, pid: 1, capacity: 1, stopped_at: null });

const taskOf = async (issue: number) =>
  (await cluster.controls[0]!.tasks.list()).find((t) => t.issueNumber === issue);

describe('environments with several workers', { timeout: 120_000 }, () => {
  it('each worker builds its own environment, and a push rebuilds it on every host that has one', async () => {
    cluster = await startCluster({ workers: [] });
    await configure({ '.github/airlock.yml': CONFIG, 'package-lock.json': '{"lockfileVersion":3}\n' });
    const control = cluster.controls[0]!;

    // Worker a alone: the first task builds on a, and restores what a built.
    const a = await worker('worker-a');
    const first = await cluster.labelIssue('First');
    await waitFor(async () => (await taskOf(first))?.state === 'succeeded', WAIT_MS, 'the first task');
    const firstTask = (await taskOf(first))!;
    expect(got.get(firstTask.id)).toMatchObject({ host: 'worker-a' });
    const [onA] = await builds().listBuilds();
    expect(onA).toMatchObject({ state: 'succeeded', host: 'worker-a', trigger: { kind: 'task' } });
    // Its token came from the control plane, into the build's own chain.
    const minted = (await control.audit.events(onA!.id)).find((e) => e.type === 'token.minted');
    expect(minted?.data).toMatchObject({ repository: ['acme/widgets'], for: 'worker' });
    expect((await control.audit.verify(onA!.id)).ok).toBe(true);
    // The log is in the database: the control plane's pages show it, though a built it.
    expect(await builds().readLog(onA!.id)).toContain('$ setup `npm ci`');

    // Worker a stops; b takes the next task, and builds its own rather than use a's.
    await a.airlock.stop();
    const b = await worker('worker-b');
    const second = await cluster.labelIssue('Second');
    await waitFor(async () => (await taskOf(second))?.state === 'succeeded', WAIT_MS, 'the second task');
    const onB = got.get((await taskOf(second))!.id);
    expect(onB).toMatchObject({ host: 'worker-b' });
    expect(onB!.id).not.toBe(onA!.environmentId);
    expect(b.builder.builds).toHaveLength(1);

    // A push to a key file: the control plane queues a rebuild for each host holding one.
    const sha = await pushKeyFile('push-key-file');
    const pushed = await waitFor(
      async () => {
        const queued = (await builds().listBuilds()).filter((x) => x.trigger.kind === 'push');
        return queued.length === 2 ? queued : undefined;
      },
      WAIT_MS,
      'the push builds',
    );
    expect(pushed.map((x) => x.host).sort()).toEqual(['worker-a', 'worker-b']);
    // b rebuilds at once (announced over LISTEN/NOTIFY); a's waits for a, and b never takes it.
    await waitFor(
      async () => (await b.airlock.environments!.store.current('acme/widgets'))?.commitSha === sha,
      WAIT_MS,
      "b's rebuilt environment",
    );
    const forA = pushed.find((x) => x.host === 'worker-a')!;
    expect((await builds().build(forA.id)).state).toBe('queued');
    expect(b.builder.builds).toHaveLength(2);
  });

  it('queues no build for a worker gone for good, and fails the builds it left queued', async () => {
    cluster = await startCluster({ workers: [] });
    await configure({ '.github/airlock.yml': CONFIG, 'package-lock.json': '{"lockfileVersion":3}\n' });
    const control = cluster.controls[0]!;
    const b = await worker('worker-b');
    // worker-gone made an environment of the repository, had a rebuild queued, and was last heard
    // from 20 minutes ago (its host was retired, or renamed).
    const lastHeard = new Date(control.clock.now().getTime() - 20 * 60_000).toISOString();
    await control.store.db
      .insertInto('workers')
      .values({ ...workerRow('worker-gone'), started_at: lastHeard, heartbeat_at: lastHeard })
      .execute();
    const gone = builds().forHost('worker-gone');
    const newBuild = (kind: 'task' | 'push') => ({
      repoFullName: 'acme/widgets',
      repoId: 1,
      installationId: cluster.installationId,
      trigger: { kind, by: 'alice' },
      config: DEFAULT_REPO_CONFIG,
      host: 'worker-gone',
    });
    const made = await gone.createBuild(newBuild('task'));
    await gone.startBuild(made.id);
    await gone.succeedBuild(
      made.id,
      { id: 'env-gone', dir: '/gone', sizeBytes: 1, commitSha: 'c'.repeat(40), specHash: 's', envKey: 'k' },
      '',
    );
    const left = await gone.createBuild(newBuild('push'));

    // A push to a key file: worker-gone would never run a build queued for it, so the rebuild is
    // one any worker may take, and worker-b takes it.
    const sha = await pushKeyFile('push-gone-host');
    await waitFor(
      async () => (await b.airlock.environments!.store.current('acme/widgets'))?.commitSha === sha,
      WAIT_MS,
      "b's environment, built from the push",
    );
    const pushed = (await builds().listBuilds()).filter((x) => x.trigger.kind === 'push' && x.id !== left.id);
    expect(pushed).toHaveLength(1);
    expect(pushed[0]).toMatchObject({ host: 'worker-b', state: 'succeeded' });

    // The build it left queued is failed (by whichever sweep comes first), saying why.
    await b.airlock.environments!.sweep();
    expect(await builds().build(left.id)).toMatchObject({
      state: 'failed',
      reason: expect.stringMatching(
        /^interrupted: its worker worker-gone has not been heard from for 10 minutes/,
      ),
    });
    // A build queued for a worker heard from a minute ago (restarting, say) is left queued.
    const minuteAgo = new Date(control.clock.now().getTime() - 60_000).toISOString();
    await control.store.db
      .insertInto('workers')
      .values({ ...workerRow('worker-c'), started_at: minuteAgo, heartbeat_at: minuteAgo })
      .execute();
    const waiting = await builds()
      .forHost('worker-c')
      .createBuild({ ...newBuild('push'), host: 'worker-c' });
    await b.airlock.environments!.sweep();
    expect(await builds().build(waiting.id)).toMatchObject({ state: 'queued' });
  });

  it('fails a build whose worker went away, and says so on the issue that needed it', async () => {
    cluster = await startCluster({ workers: [] });
    await configure({ '.github/airlock.yml': CONFIG });
    const control = cluster.controls[0]!;
    const b = await worker('worker-b');
    const issue = cluster.gh.createIssue('acme/widgets', { title: 'Needs a build', user: 'alice' });
    // A build worker-gone started and stopped renewing (its host was lost).
    const store = builds();
    const build = await store.createBuild({
      repoFullName: 'acme/widgets',
      repoId: 1,
      installationId: cluster.installationId,
      trigger: { kind: 'task', by: 'alice', issueNumber: issue.number },
      config: DEFAULT_REPO_CONFIG,
      host: 'worker-gone',
    });
    await store.forHost('worker-gone').startBuild(build.id);
    // Not yet stale: left alone.
    expect(await b.airlock.environments!.sweep()).toEqual([]);
    await control.store.db
      .updateTable('environment_builds')
      .set({ heartbeat_at: new Date(Date.now() - 5 * 60_000).toISOString() })
      .where('id', '=', build.id)
      .execute();
    const swept = await b.airlock.environments!.sweep();
    expect(swept.map((x) => x.id)).toEqual([build.id]);
    expect(swept[0]).toMatchObject({
      state: 'failed',
      reason: expect.stringMatching(/^interrupted: its worker worker-gone stopped renewing/),
    });
    // Once: a second sweep (or another worker's) finds nothing.
    expect(await b.airlock.environments!.sweep()).toEqual([]);
    await waitFor(
      () =>
        cluster.gh.state.comments.find((c) => c.issueNumber === issue.number && c.body.includes(build.id)),
      WAIT_MS,
      'the failure comment',
    );
  });
});
