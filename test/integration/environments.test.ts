import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { environmentBehaviour, type Harness, startHarness } from '../helpers/control-plane-harness.ts';
import { DirectoryBuilder } from '../helpers/directory-builder.ts';
import { pushCommit } from '../helpers/git-push.ts';
import { waitFor } from '../helpers/wait-for.ts';
import { examplePayload } from '../helpers/webhook-examples.ts';

const WAIT_MS = 60_000;
const CONFIG = 'environment:\n  setup: [npm ci]\n';

let h: Harness;
let builder: DirectoryBuilder;
const got = new Map<string, string | undefined>();

beforeEach(async () => {
  builder = new DirectoryBuilder((repo) => h.gitRemote(repo));
  h = await startHarness({
    files: { '.github/airlock.yml': CONFIG, 'package-lock.json': '{"lockfileVersion":3}\n' },
    environmentBuilder: builder,
  });
  got.clear();
  h.runner.behaviour = environmentBehaviour(got);
});
afterEach(async () => {
  await h.close();
});

function world(login = 'alice') {
  const ids: Record<string, number> = { alice: 101, bob: 102, renovate: 103 };
  return {
    repo: { id: 1, fullName: h.repo },
    sender: { login, id: ids[login] ?? 999, type: login === 'renovate' ? 'Bot' : 'User' },
    installationId: h.installationId,
  };
}

async function labelIssue(title: string): Promise<number> {
  const issue = h.emulator.createIssue(h.repo, { title, body: 'Please.', user: 'alice' });
  const payload = examplePayload('issues', 'labeled', world());
  payload.issue.number = issue.number;
  payload.issue.title = title;
  payload.issue.pull_request = undefined;
  payload.label = { ...payload.label, name: 'airlock' };
  await h.send('issues', payload);
  return issue.number;
}

async function comment(issueNumber: number, body: string, login = 'alice') {
  const payload = examplePayload('issue_comment', 'created', world(login));
  payload.issue.number = issueNumber;
  payload.issue.pull_request = undefined;
  payload.comment.body = body;
  payload.comment.id = Math.floor(Math.random() * 1e9);
  payload.comment.performed_via_github_app = null;
  await h.send('issue_comment', payload);
}

/** Pushes files to the default branch and sends the push webhook GitHub would send. */
async function pushToMain(files: Record<string, string>, login = 'alice'): Promise<string> {
  const sha = await pushCommit({ remote: await h.gitRemote(h.repo), base: 'main', branch: 'main', files });
  const payload = examplePayload('push', null, world(login));
  Object.assign(payload, { ref: 'refs/heads/main', after: sha, forced: false, deleted: false });
  payload.commits = [{ ...payload.commits?.[0], added: [], removed: [], modified: Object.keys(files) }];
  await h.send('push', payload);
  return sha;
}

const taskOf = async (issue: number) => (await h.plane.tasks.list()).find((t) => t.issueNumber === issue);
const store = () => h.airlock.environments!.store;

describe('environments on the control plane', { timeout: 240_000 }, () => {
  it('builds on the first task that needs one, then every task of the repository restores it', async () => {
    const first = await labelIssue('First');
    await waitFor(async () => (await taskOf(first))?.state === 'succeeded', WAIT_MS, 'first task');
    const second = await labelIssue('Second');
    await waitFor(async () => (await taskOf(second))?.state === 'succeeded', WAIT_MS, 'second task');

    expect(builder.builds).toHaveLength(1);
    const [build] = await store().listBuilds();
    expect(build).toMatchObject({ state: 'succeeded', trigger: { kind: 'task', by: 'alice' } });
    expect(got.get((await taskOf(first))!.id)).toBe(build!.environmentId);
    expect(got.get((await taskOf(second))!.id)).toBe(build!.environmentId);
    // The build's own record: a chain of its own that verifies.
    const types = (await h.airlock.audit.events(build!.id)).map((e) => e.type);
    expect(types).toEqual(['build.created', 'build.state', 'build.outcome']);
    expect((await h.airlock.audit.verify(build!.id)).ok).toBe(true);
    expect(await h.audit.types((await taskOf(first))!.id)).toContain('environment.waiting');
    expect(await h.audit.types((await taskOf(second))!.id)).toContain('environment.restore');
    expect(await h.airlock.environments!.log(build!.id)).toContain('$ setup `npm ci`');
  });

  it('rebuilds when a push changes a key file, and the old environment serves until the new one is ready', async () => {
    const first = await labelIssue('First');
    await waitFor(async () => (await taskOf(first))?.state === 'succeeded', WAIT_MS, 'first task');
    const old = (await store().current(h.repo))!;

    const release = builder.hold();
    await pushToMain({ 'package-lock.json': '{"lockfileVersion":3,"packages":{}}\n' });
    await waitFor(
      async () => (await store().openBuild(h.repo))?.state === 'running',
      WAIT_MS,
      'the rebuild to run',
    );
    const during = await labelIssue('During the rebuild');
    await waitFor(
      async () => (await taskOf(during))?.state === 'succeeded',
      WAIT_MS,
      'task during the rebuild',
    );
    expect(got.get((await taskOf(during))!.id)).toBe(old.id);

    release();
    await waitFor(async () => (await store().current(h.repo))?.id !== old.id, WAIT_MS, 'the new environment');
    const fresh = (await store().current(h.repo))!;
    expect(fresh.envKey).not.toBe(old.envKey);
    expect((await store().listBuilds())[0]?.trigger).toMatchObject({ kind: 'push', by: 'alice' });
    const after = await labelIssue('After');
    await waitFor(
      async () => (await taskOf(after))?.state === 'succeeded',
      WAIT_MS,
      'task after the rebuild',
    );
    expect(got.get((await taskOf(after))!.id)).toBe(fresh.id);
    // The superseded environment's files go once no task holds it.
    expect(await store().environment(old.id)).toMatchObject({
      state: 'collected',
      collectedWhy: `superseded by ${fresh.id}`,
    });
    expect(await readdir(h.airlock.environments!.root)).toEqual([path.basename(fresh.dir)]);
    // A build that succeeds says nothing on GitHub.
    await h.plane.quiesce();
    expect(h.emulator.state.commitComments).toEqual([]);
  });

  it('builds again after a running build when a push changes a key file meanwhile', async () => {
    const first = await labelIssue('First');
    await waitFor(async () => (await taskOf(first))?.state === 'succeeded', WAIT_MS, 'first task');
    const release = builder.hold();
    await pushToMain({ 'package-lock.json': '{"lockfileVersion":3,"v":2}\n' });
    const running = await waitFor(
      async () => {
        const open = await store().openBuild(h.repo);
        return open?.state === 'running' ? open : undefined;
      },
      WAIT_MS,
      'the rebuild to run',
    );
    // Pushed after the running build cloned: it cannot build this change, so one more is queued,
    // and a third push while that one waits joins it.
    const second = await pushToMain({ 'package-lock.json': '{"lockfileVersion":3,"v":3}\n' });
    await pushToMain({ 'package-lock.json': '{"lockfileVersion":3,"v":4}\n' });
    await h.plane.quiesce();
    const builds = await store().listBuilds();
    expect(builds.map((b) => b.state)).toEqual(['queued', 'running', 'succeeded']);
    expect(builds[0]!.trigger).toMatchObject({ kind: 'push', commitSha: second });
    release();
    await waitFor(async () => !(await store().openBuild(h.repo)), WAIT_MS, 'both builds');
    const [latest] = await store().listBuilds();
    expect(latest).toMatchObject({ state: 'succeeded' });
    expect((await store().build(running.id)).state).toBe('succeeded');
    const current = await store().current(h.repo);
    expect(current?.id).toBe(latest!.environmentId);
    // Built from the last push.
    expect(current?.commitSha).toBe(await h.emulator.branchSha(h.repo, 'main'));
  });

  it('builds nothing for a push that changes no key file, or whose config goes beyond the operator policy', async () => {
    await pushToMain({ 'src/index.js': 'console.log(1)\n' });
    await h.plane.quiesce();
    expect(builder.builds).toEqual([]);
    // A config past the operator's caps builds nothing either: a build's VM has the repository's limits.
    await pushToMain({ '.github/airlock.yml': `${CONFIG}limits:\n  cpus: 16\n` });
    await h.plane.quiesce();
    expect(builder.builds).toEqual([]);
    const outcomes = h.db
      .prepare(`SELECT outcome FROM deliveries WHERE intent_json LIKE '%"push"%' ORDER BY received_at`)
      .all();
    expect(outcomes).toEqual([
      { outcome: 'no key file changed' },
      { outcome: 'beyond the operator policy: limits.cpus' },
    ]);
  });

  it('fails the first task with the build’s reason and comments on its issue with the log tail and a link', async () => {
    builder.failNext = 'setup `npm ci` failed (exit 1): npm ERR! 404 left-pad';
    const issue = await labelIssue('Needs an environment');
    await waitFor(async () => (await taskOf(issue))?.state === 'failed', WAIT_MS, 'the task to fail');
    expect((await taskOf(issue))!.reason).toMatch(
      /^setup_failed: the environment build build-\w+ failed and acme\/widgets has no earlier environment: setup `npm ci` failed/,
    );
    const [build] = await store().listBuilds();
    const body = await waitFor(
      () =>
        h.emulator.state.comments.find(
          (c: { issueNumber: number; body: string }) =>
            c.issueNumber === issue && c.body.includes('could not build'),
        )?.body,
      15_000,
      'the failure comment',
    );
    expect(body).toContain('npm ERR! 404 left-pad');
    expect(body).toContain(`/environments/builds/${build!.id}`);
    expect(await readdir(h.airlock.environments!.root)).toEqual([]);
  });

  it('reports a failed build from a push on the pushed commit, with the log tail and a link', async () => {
    const first = await labelIssue('First');
    await waitFor(async () => (await taskOf(first))?.state === 'succeeded', WAIT_MS, 'first task');
    builder.failNext = 'setup `npm ci` failed (exit 1): npm ERR! 404 left-pad';
    const sha = await pushToMain({ 'package-lock.json': '{"lockfileVersion":3,"packages":{}}\n' });
    await waitFor(
      async () => (await store().listBuilds())[0]?.state === 'failed',
      WAIT_MS,
      'the rebuild to fail',
    );
    const [build] = await store().listBuilds();
    expect(build!.trigger).toMatchObject({ kind: 'push', by: 'alice', commitSha: sha });
    const comment = await waitFor(
      () => h.emulator.state.commitComments.find((c) => c.commitSha === sha),
      15_000,
      'the commit comment',
    );
    expect(comment.body).toContain('could not build the environment of acme/widgets');
    expect(comment.body).toContain('after a push by @alice');
    expect(comment.body).toContain('npm ERR! 404 left-pad');
    expect(comment.body).toContain(`/environments/builds/${build!.id}`);
    expect(comment.body).toContain('Tasks keep running on the last good environment');
    // Only there: the issue of the task that built the last good environment hears nothing of it.
    expect(h.emulator.state.comments.filter((c) => c.body.includes('could not build'))).toEqual([]);
  });

  it('runs a task on the last good environment when a rebuild fails', async () => {
    const first = await labelIssue('First');
    await waitFor(async () => (await taskOf(first))?.state === 'succeeded', WAIT_MS, 'first task');
    const good = (await store().current(h.repo))!;
    builder.failNext = 'apt-get install failed';
    await comment(first, '/airlock rebuild');
    await waitFor(
      async () => (await store().listBuilds())[0]?.state === 'failed',
      WAIT_MS,
      'the rebuild to fail',
    );
    expect((await store().listBuilds())[0]?.trigger).toMatchObject({
      kind: 'command',
      by: 'alice',
      issueNumber: first,
    });

    const next = await labelIssue('Next');
    await waitFor(async () => (await taskOf(next))?.state === 'succeeded', WAIT_MS, 'next task');
    expect(got.get((await taskOf(next))!.id)).toBe(good.id);
    expect(builder.builds).toHaveLength(2);
  });

  it('takes /airlock rebuild only from people with write access', async () => {
    const issue = h.emulator.createIssue(h.repo, { title: 'x', body: 'y', user: 'bob' });
    await comment(issue.number, '/airlock rebuild', 'bob');
    await h.plane.quiesce();
    expect(await store().listBuilds()).toEqual([]);
    await comment(issue.number, '/airlock rebuild', 'alice');
    await waitFor(async () => (await store().listBuilds())[0]?.state === 'succeeded', WAIT_MS, 'the rebuild');
  });

  it('leaves no half-made environment when airlock stops during a build, or dies during one', async () => {
    builder.hold();
    const issue = await labelIssue('Interrupted');
    await waitFor(
      async () => (await store().openBuild(h.repo))?.state === 'running',
      WAIT_MS,
      'the build to run',
    );
    const building = (await store().openBuild(h.repo))!;
    await h.restart();
    expect(await store().build(building.id)).toMatchObject({
      state: 'failed',
      reason: 'interrupted: airlock is shutting down',
    });
    expect(await taskOf(issue)).toMatchObject({ state: 'cancelled', reason: 'airlock is shutting down' });
    expect(await readdir(h.airlock.environments!.root)).toEqual([]);

    // A process killed outright leaves its build 'running' and a snapshot directory half written.
    h.db
      .prepare(
        "UPDATE environment_builds SET state = 'running', finished_at = NULL, reason = NULL WHERE id = ?",
      )
      .run(building.id);
    const half = path.join(h.airlock.environments!.root, 'env-halfmade');
    await mkdir(half, { recursive: true });
    await writeFile(path.join(half, 'memory'), 'partial');
    await h.restart();
    expect(await store().build(building.id)).toMatchObject({
      state: 'failed',
      reason: 'interrupted: airlock stopped during the build; what it had made was removed',
    });
    expect(await readdir(h.airlock.environments!.root)).toEqual([]);
    expect(await store().ready()).toEqual([]);
    expect((await h.airlock.audit.verify(building.id)).ok).toBe(true);
  });
});
