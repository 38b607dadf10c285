import { serve } from '@hono/node-server';
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_REPO_CONFIG } from '../../src/config/repo-config.ts';
import { EnvironmentStore } from '../../src/environments/environment-store.ts';
import { mintTaskToken } from '../../src/github/task-token.ts';
import { SecretRedactor } from '../../src/secrets.ts';
import type { Store } from '../../src/store/database.ts';
import type { Task } from '../../src/tasks/task.ts';
import {
  ControlPlaneClient,
  controlChannelApi,
  remoteCredential,
} from '../../src/workers/control-channel.ts';
import { TaskLeases } from '../../src/workers/task-leases.ts';
import { type GitHubEmulator, startGitHubEmulator } from '../emulator/index.ts';
import { ManualClock } from '../helpers/manual-clock.ts';
import { RecordingAudit } from '../helpers/recording-audit.ts';
import { DIALECTS, openTestStore } from '../helpers/test-store.ts';

const SECRET = 's'.repeat(40);

describe.each(DIALECTS)('the control plane channel on %s', (dialect) => {
  const opened: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const close of opened.splice(0).reverse()) await close();
  });

  async function world() {
    const gh: GitHubEmulator = await startGitHubEmulator();
    opened.push(() => gh.close());
    await gh.createRepo('acme', 'widgets', { files: { 'README.md': 'hi\n' } });
    const installationId = gh.installApp('acme');
    const store: Store = await openTestStore(dialect);
    opened.push(() => store.close());
    const clock = new ManualClock(Date.parse('2026-12-01T10:00:00Z'));
    const leases = new TaskLeases(store, clock, { leaseMs: 30_000 });
    const now = clock.now().toISOString();
    await store.db
      .insertInto('tasks')
      .values({
        id: 't1',
        installation_id: installationId,
        repo_full_name: 'acme/widgets',
        repo_id: 1,
        issue_number: 1,
        pr_number: null,
        kind: 'issue',
        state: 'queued',
        reason: null,
        branch: 'airlock/issue-1-t1',
        base_ref: 'main',
        actor_login: 'alice',
        actor_id: 1,
        trigger_event: 'issues.labeled',
        trigger_url: null,
        delivery_id: null,
        instruction: null,
        start_json: JSON.stringify({ from: 'ref', ref: 'main' }),
        parent_task_id: null,
        tracking_comment_id: null,
        check_run_id: null,
        head_sha: null,
        result_json: null,
        thread_json: null,
        created_at: now,
        updated_at: now,
        started_at: null,
        finished_at: null,
        lease_owner: null,
        lease_expires_at: null,
        cancel_requested_by: null,
      })
      .execute();
    const minted: string[] = [];
    const redactor = new SecretRedactor();
    const app = controlChannelApi({
      store,
      secret: SECRET,
      clock,
      log: { warn: () => {} },
      services: {
        mintTaskToken: async (task: Task) => {
          minted.push(task.id);
          const [owner, name] = task.repoFullName.split('/') as [string, string];
          return mintTaskToken(
            { appId: gh.app.id, privateKey: gh.app.privateKey, baseUrl: gh.apiUrl, redactor },
            { installationId: task.installationId!, repository: { owner, name } },
          );
        },
        mintReadToken: async () => undefined,
        mintBuildToken: async (build) => {
          minted.push(build.id);
          const [owner, name] = build.repoFullName.split('/') as [string, string];
          return mintTaskToken(
            { appId: gh.app.id, privateKey: gh.app.privateKey, baseUrl: gh.apiUrl, redactor },
            { installationId: build.installationId!, repository: { owner, name } },
          );
        },
        promptThread: async () => undefined,
        publish: async (_task, result) => ({ ...result, prNumber: 9, prUrl: 'https://example.test/pull/9' }),
        app: () => ({ slug: 'airlock-test', webUrl: gh.webUrl, apiUrl: gh.apiUrl }),
      },
    });
    const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
      const s = serve({ fetch: app.fetch, hostname: '127.0.0.1', port: 0 }, () => resolve(s));
    });
    opened.push(() => new Promise((resolve) => server.close(() => resolve())));
    const address = server.address();
    const url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    const client = (workerId: string, secret = SECRET) => new ControlPlaneClient({ url, secret, workerId });
    return { gh, store, clock, leases, client, minted, url, installationId };
  }

  it('mints an environment build token only for the worker running the build', async () => {
    const { gh, store, clock, client, minted, installationId } = await world();
    const builds = new EnvironmentStore(store, clock);
    const input = {
      repoFullName: 'acme/widgets',
      repoId: 1,
      installationId,
      trigger: { kind: 'push' as const, by: 'alice' },
      config: DEFAULT_REPO_CONFIG,
    };
    // Queued for any worker: nobody runs it yet.
    const build = await builds.createBuild({ ...input, host: null });
    await expect(client('w1').mintBuildToken(build.id)).rejects.toThrow(
      /HTTP 403.*worker w1 does not run environment build .* \(it is queued\)/,
    );
    expect(await builds.forHost('w1').startBuild(build.id)).toMatchObject({ state: 'running', host: 'w1' });
    const token = await client('w1').mintBuildToken(build.id);
    expect(token.repositories).toEqual(['acme/widgets']);
    expect(gh.state.tokens.some((t) => t.token === token.token)).toBe(true);
    await expect(client('w2').mintBuildToken(build.id)).rejects.toThrow(
      /HTTP 403.*worker w2 does not run environment build .* \(it is running on w1\)/,
    );
    await expect(client('w1').mintBuildToken('build-nope')).rejects.toThrow(/HTTP 404.*does not exist/);
    await builds.failBuild(build.id, 'failed', '');
    await expect(client('w1').mintBuildToken(build.id)).rejects.toThrow(/HTTP 403.*it is failed/);
    expect(minted).toEqual([build.id]);
  });

  it('mints a task token only for the worker holding the task lease, while it holds it', async () => {
    const { gh, leases, client, clock, minted } = await world();
    await expect(client('w1').mintTaskToken('t1')).rejects.toThrow(
      /HTTP 403.*does not hold task t1 \(it is queued\)/,
    );
    await leases.claim('w1', { free: 1, maxPerRepo: 1 });
    const token = await client('w1').mintTaskToken('t1');
    expect(token.repositories).toEqual(['acme/widgets']);
    expect(token.permissions).toMatchObject({ contents: 'write' });
    expect(gh.state.tokens.some((t) => t.token === token.token)).toBe(true);
    await expect(client('w2').mintTaskToken('t1')).rejects.toThrow(
      /HTTP 403.*worker w2 does not hold task t1/,
    );
    await expect(client('w1').mintTaskToken('nope')).rejects.toThrow(/HTTP 404.*task nope does not exist/);
    await expect(client('w1', 'x'.repeat(40)).mintTaskToken('t1')).rejects.toThrow(
      /HTTP 401.*AIRLOCK_WORKER_SECRET/,
    );
    // The lease runs out unrenewed: the worker gets nothing more for the task.
    clock.advance(30_001);
    await expect(client('w1').mintTaskToken('t1')).rejects.toThrow(/HTTP 403/);
    expect(minted).toEqual(['t1']);
    expect(await client('w1').app()).toEqual({ slug: 'airlock-test', webUrl: gh.webUrl, apiUrl: gh.apiUrl });
  });

  it('gives the worker a credential it revokes itself, and publishes through the control plane', async () => {
    const { gh, leases, client } = await world();
    await leases.claim('w1', { free: 1, maxPerRepo: 1 });
    const audit = new RecordingAudit();
    const credential = remoteCredential({
      client: client('w1'),
      taskId: 't1',
      kind: 'task',
      githubApiUrl: gh.apiUrl,
      audit,
      redactor: new SecretRedactor(),
    });
    const value = await credential.token();
    expect(await credential.token()).toBe(value);
    await credential.revoke();
    expect(gh.state.tokens.find((t) => t.token === value)?.revoked).toBe(true);
    expect(audit.events.map((e) => e.type)).toEqual(['token.revoked']);
    await expect(credential.token()).rejects.toThrow(/revoked/);
    const published = await client('w1').publish('t1', {
      outcome: 'changes_pushed',
      headSha: 'abc',
      summary: 's',
    });
    expect(published).toMatchObject({ prNumber: 9, outcome: 'changes_pushed' });
    await expect(client('w1').publish('t1', { outcome: 'nonsense' } as never)).rejects.toThrow(
      /not a task result/,
    );
  });
});
