import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sign } from '@octokit/webhooks-methods';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.ts';
import { WebhookInbox } from '../../src/github/webhook-inbox.ts';
import { openDatabase, openSqliteStore } from '../../src/store/database.ts';
import { TaskFailure } from '../../src/tasks/task-runner.ts';
import { TaskStore } from '../../src/tasks/task-store.ts';
import { type Harness, startHarness } from '../helpers/control-plane-harness.ts';
import { waitFor } from '../helpers/wait-for.ts';
import { examplePayload } from '../helpers/webhook-examples.ts';

let h: Harness;

beforeEach(async () => {
  h = await startHarness();
});
afterEach(async () => {
  await h.close();
});

function world(login = 'alice', type = 'User') {
  const ids: Record<string, number> = { alice: 101, bob: 102, renovate: 103 };
  return {
    repo: { id: 1, fullName: h.repo },
    sender: { login, id: ids[login] ?? 999, type },
    installationId: h.installationId,
  };
}

function labelPayload(issueNumber: number, login = 'alice', type = 'User', label = 'airlock') {
  const payload = examplePayload('issues', 'labeled', world(login, type));
  payload.issue.number = issueNumber;
  payload.issue.title = `Issue ${issueNumber}`;
  payload.issue.pull_request = undefined;
  payload.label = { ...payload.label, name: label };
  return payload;
}

function commentPayload(issueNumber: number, body: string, login = 'alice', type = 'User', pull = false) {
  const payload = examplePayload('issue_comment', 'created', world(login, type));
  payload.issue.number = issueNumber;
  payload.issue.pull_request = pull ? { url: 'x' } : undefined;
  payload.comment.body = body;
  payload.comment.id = 5000 + issueNumber;
  payload.comment.performed_via_github_app = null;
  return payload;
}

const inboxRow = (id: string) =>
  h.db.prepare('SELECT payload, attempts, error FROM webhook_inbox WHERE delivery_id = ?').get(id) as
    | { payload: string | null; attempts: number; error: string | null }
    | undefined;

const trackingComments = (issue: number) =>
  h.emulator.state.comments.filter(
    (c: { issueNumber: number; body: string }) =>
      c.issueNumber === issue && c.body.includes('**airlock** · task'),
  );

describe('a labelled issue', () => {
  it('becomes one task that is queued, run, reported and turned into a draft PR', async () => {
    const issue = h.emulator.createIssue(h.repo, { title: 'Make it faster', body: 'Please.', user: 'alice' });
    const response = await h.send('issues', labelPayload(issue.number), { deliveryId: 'delivery-1' });
    expect(response.status).toBe(200);
    await waitFor(
      async () => (await h.plane.tasks.list())[0]?.state === 'succeeded',
      15_000,
      'task to succeed',
    );
    await h.plane.quiesce();

    const [task] = await h.plane.tasks.list();
    expect(task).toMatchObject({
      actorLogin: 'alice',
      issueNumber: issue.number,
      kind: 'issue',
      prNumber: expect.any(Number),
    });
    expect(task!.branch).toMatch(new RegExp(`^airlock/issue-${issue.number}-`));
    expect(h.runner.runs).toEqual([task!.id]);

    const reactions = h.emulator.state.reactions.filter((r: { content: string }) => r.content === 'eyes');
    expect(reactions).toHaveLength(1);
    const tracking = trackingComments(issue.number);
    expect(tracking).toHaveLength(1);
    expect(tracking[0].body).toContain('✅ Done');
    expect(tracking[0].body).toContain(`http://airlock.test/tasks/${task!.id}`);

    const pr = h.emulator.state.pulls.find((p) => p.number === task!.prNumber)!;
    expect(pr).toMatchObject({ draft: true, state: 'open' });
    expect(pr.head.ref).toBe(task!.branch);
    expect(pr.body).toContain(`Closes #${issue.number}`);
    expect(pr.body).toContain('@alice');
    expect(pr.body).toContain(`http://airlock.test/tasks/${task!.id}`);

    const check = h.emulator.state.checkRuns.find((c) => c.head_sha === task!.headSha)!;
    expect(check).toMatchObject({ name: 'airlock', status: 'completed', conclusion: 'success' });
    expect(check.details_url).toBe(`http://airlock.test/tasks/${task!.id}`);
    expect(await h.audit.types(task!.id)).toEqual(
      expect.arrayContaining(['task.created', 'task.state', 'task.outcome']),
    );
  });

  it('is never run twice when GitHub redelivers the webhook', async () => {
    const issue = h.emulator.createIssue(h.repo, { title: 'Twice', user: 'alice' });
    const payload = labelPayload(issue.number);
    await h.send('issues', payload, { deliveryId: 'same-delivery' });
    const again = await h.send('issues', payload, { deliveryId: 'same-delivery' });
    expect(await again.json()).toEqual({ ok: true, duplicate: true });
    await h.plane.quiesce();
    await h.send('issues', payload, { deliveryId: 'same-delivery' });
    await h.plane.quiesce();
    expect(await h.plane.tasks.list()).toHaveLength(1);
    expect(h.runner.runs).toHaveLength(1);
  });

  it('ignores other labels', async () => {
    const issue = h.emulator.createIssue(h.repo, { title: 'Other', user: 'alice' });
    await h.send('issues', labelPayload(issue.number, 'alice', 'User', 'bug'), { deliveryId: 'other-label' });
    await h.plane.quiesce();
    expect(await h.plane.tasks.list()).toHaveLength(0);
    expect(await h.plane.deliveries.get('other-label')).toMatchObject({ status: 'ignored' });
  });
});

describe('refusals', () => {
  it('refuses people without write access, once and politely', async () => {
    const issue = h.emulator.createIssue(h.repo, { title: 'Bob wants', user: 'bob' });
    await h.send('issue_comment', commentPayload(issue.number, '/airlock do it', 'bob'), {
      deliveryId: 'bob-1',
    });
    await h.plane.quiesce();
    expect(await h.plane.tasks.list()).toHaveLength(0);
    const replies = h.emulator.state.comments.filter(
      (c: { issueNumber: number }) => c.issueNumber === issue.number,
    );
    expect(replies).toHaveLength(1);
    expect(replies[0].body).toMatch(/@bob.*write access.*`read`/s);
    expect(await h.plane.deliveries.get('bob-1')).toMatchObject({
      status: 'refused',
      outcome: 'bob has read permission',
    });
  });

  it('refuses bots by their type, whatever their name', async () => {
    const issue = h.emulator.createIssue(h.repo, { title: 'Bot', user: 'alice' });
    h.emulator.setPermission(h.repo, 'renovate', 'admin');
    await h.send('issues', labelPayload(issue.number, 'renovate', 'Bot'), { deliveryId: 'bot-1' });
    await h.plane.quiesce();
    expect(await h.plane.tasks.list()).toHaveLength(0);
    expect(await h.plane.deliveries.get('bot-1')).toMatchObject({
      status: 'refused',
      outcome: 'sender renovate is a Bot',
    });
  });

  it('refuses commands on pull requests from forks', async () => {
    const payload = examplePayload('pull_request_review_comment', 'created', world());
    payload.comment.body = '/airlock fix this';
    // A fork is a head in another repository than the base: told by repository id.
    payload.pull_request.head.repo = {
      ...payload.pull_request.head.repo,
      id: 4242,
      full_name: 'mallory/widgets',
      fork: true,
    };
    payload.pull_request.head.ref = 'patch-1';
    await h.send('pull_request_review_comment', payload, { deliveryId: 'fork-1' });
    await h.plane.quiesce();
    expect(await h.plane.tasks.list()).toHaveLength(0);
    expect(await h.plane.deliveries.get('fork-1')).toMatchObject({
      status: 'refused',
      outcome: 'pull request comes from a fork',
    });
  });

  it('names the bad field of an invalid .github/airlock.yml and starts nothing', async () => {
    await h.close();
    h = await startHarness({ files: { '.github/airlock.yml': 'agent: gpt-9\ntimeout_minutes: -1\n' } });
    const issue = h.emulator.createIssue(h.repo, { title: 'Config', user: 'alice' });
    await h.send('issues', labelPayload(issue.number), { deliveryId: 'config-1' });
    await h.plane.quiesce();
    expect(await h.plane.tasks.list()).toHaveLength(0);
    const reply = h.emulator.state.comments.find((c) => c.issueNumber === issue.number)!;
    expect(reply.body).toContain('`agent`');
    expect(reply.body).toContain('`timeout_minutes`');
  });
});

describe('the webhook endpoint', () => {
  it('answers 401 to a bad signature and stores nothing', async () => {
    const issue = h.emulator.createIssue(h.repo, { title: 'Forged', user: 'alice' });
    const response = await h.send('issues', labelPayload(issue.number), {
      deliveryId: 'forged',
      secret: 'not-the-secret',
    });
    expect(response.status).toBe(401);
    expect(inboxRow('forged')).toBeUndefined();
    expect(await h.plane.deliveries.get('forged')).toBeUndefined();
  });

  it('answers 400 to a malformed body and to missing headers', async () => {
    const body = '{"action": "labeled", ';
    const signature = await sign(h.emulator.app.webhookSecret, body);
    const headers = {
      'content-type': 'application/json',
      'x-github-event': 'issues',
      'x-github-delivery': 'bad-json',
    };
    const malformed = await fetch(h.webhookUrl, {
      method: 'POST',
      body,
      headers: { ...headers, 'x-hub-signature-256': signature },
    });
    expect(malformed.status).toBe(400);
    const unsigned = await fetch(h.webhookUrl, { method: 'POST', body: '{}', headers });
    expect(unsigned.status).toBe(400);
    expect(inboxRow('bad-json')).toBeUndefined();
    expect(await h.plane.deliveries.get('bad-json')).toBeUndefined();
  });

  it('keeps a delivery stored before a crash and dispatches it after the restart', async () => {
    const issue = h.emulator.createIssue(h.repo, { title: 'Stored, then a crash', user: 'alice' });
    await h.plane.stop(); // as if the process died right after answering GitHub
    await new WebhookInbox(h.airlock.store, systemClock).store(
      'stored-1',
      'issues',
      JSON.stringify(labelPayload(issue.number)),
    );
    await h.restart();
    await waitFor(
      async () => (await h.plane.tasks.list()).find((t) => t.deliveryId === 'stored-1'),
      10_000,
      'the task',
    );
    await h.plane.quiesce();
    expect(inboxRow('stored-1')).toMatchObject({ payload: null, error: null });
    expect(await h.plane.tasks.list()).toHaveLength(1);
  });

  it('sets aside a delivery that cannot be read, at once, and keeps going', async () => {
    const issue = h.emulator.createIssue(h.repo, { title: 'After a bad one', user: 'alice' });
    await h.plane.stop();
    const inbox = new WebhookInbox(h.airlock.store, systemClock);
    // Stored bodies are verified JSON objects; a damaged row must not stop the ones behind it.
    await inbox.store('damaged-1', 'issues', '{"action": ');
    await inbox.store('good-1', 'issues', JSON.stringify(labelPayload(issue.number)));
    await h.restart();
    await waitFor(
      async () => (await h.plane.tasks.list()).find((t) => t.deliveryId === 'good-1'),
      10_000,
      'the task',
    );
    // Reading a delivery is pure: what fails once fails every time, so it is set aside, not retried.
    await waitFor(() => inboxRow('damaged-1')?.payload === null, 15_000, 'the damaged delivery set aside');
    expect(inboxRow('damaged-1')).toMatchObject({ attempts: 0, error: expect.stringMatching(/JSON/) });
  });

  it('accepts and ignores unknown events and actions', async () => {
    const star = await h.send('star', examplePayload('star', null, world()), { deliveryId: 'star-1' });
    const opened = await h.send('issues', examplePayload('issues', 'opened', world()), {
      deliveryId: 'opened-1',
    });
    const weird = await h.send('made_up_event', { action: 'x', repository: null }, { deliveryId: 'weird-1' });
    expect([star.status, opened.status, weird.status]).toEqual([200, 200, 200]);
    await h.plane.quiesce();
    expect(await h.plane.tasks.list()).toHaveLength(0);
  });
});

describe('steering', () => {
  it('cancels a running task on /airlock cancel, and retries a failed one on /airlock retry', async () => {
    let release: (() => void) | undefined;
    h.runner.behaviour = async (_task, ctx) => {
      await ctx.enterPhase('running');
      return new Promise((_resolve, reject) => {
        ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason));
        release = () => reject(new TaskFailure('agent_failed', 'the agent exited with 1'));
      });
    };
    const issue = h.emulator.createIssue(h.repo, { title: 'Long', user: 'alice' });
    await h.send('issues', labelPayload(issue.number), { deliveryId: 'long-1' });
    const running = await waitFor(
      async () => (await h.plane.tasks.list()).find((t) => t.state === 'running'),
      10_000,
      'running task',
    );
    await h.send('issue_comment', commentPayload(issue.number, '/airlock cancel'), {
      deliveryId: 'cancel-1',
    });
    await waitFor(
      async () => (await h.plane.tasks.get(running.id)).state === 'cancelled',
      10_000,
      'cancellation',
    );
    expect((await h.plane.tasks.get(running.id)).reason).toBe('cancelled by alice');

    await h.send('issue_comment', commentPayload(issue.number, '/airlock try again please'), {
      deliveryId: 'again-1',
    });
    const second = await waitFor(async () =>
      (await h.plane.tasks.list()).find((t) => t.id !== running.id && t.state === 'running'),
    );
    release?.();
    await waitFor(async () => (await h.plane.tasks.get(second.id)).state === 'failed');
    expect((await h.plane.tasks.get(second.id)).reason).toBe('agent_failed: the agent exited with 1');

    h.runner.behaviour = (await import('../helpers/control-plane-harness.ts')).pushFileBehaviour(
      'RETRY.md',
      'ok\n',
    );
    await h.send('issue_comment', commentPayload(issue.number, '/airlock retry'), { deliveryId: 'retry-1' });
    const retry = await waitFor(async () => (await h.plane.tasks.list()).find((t) => t.kind === 'retry'));
    await waitFor(async () => (await h.plane.tasks.get(retry.id)).state === 'succeeded', 15_000);
    expect(await h.plane.tasks.get(retry.id)).toMatchObject({
      parentTaskId: second.id,
      attempt: 2,
      instruction: 'try again please',
    });
  });

  it('turns a review comment on an airlock PR into a follow-up on the same branch and PR', async () => {
    const issue = h.emulator.createIssue(h.repo, { title: 'Base work', user: 'alice' });
    await h.send('issues', labelPayload(issue.number), { deliveryId: 'base-1' });
    const first = await waitFor(
      async () => (await h.plane.tasks.list()).find((t) => t.state === 'succeeded'),
      15_000,
    );
    await h.plane.quiesce();
    const pr = h.emulator.state.pulls.find((p) => p.number === first.prNumber)!;

    const payload = examplePayload('pull_request_review_comment', 'created', world());
    payload.pull_request = {
      ...payload.pull_request,
      number: pr.number,
      title: pr.title,
      head: pr.head,
      base: pr.base,
    };
    payload.comment = {
      ...payload.comment,
      body: '@airlock-test use a constant here',
      path: 'CHANGES.md',
      line: 1,
      diff_hunk: '@@ -0,0 +1 @@\n+made',
    };
    await h.send('pull_request_review_comment', payload, { deliveryId: 'review-1' });
    const followUp = await waitFor(
      async () => (await h.plane.tasks.list()).find((t) => t.kind === 'follow_up' && t.state === 'succeeded'),
      15_000,
    );
    await h.plane.quiesce();
    expect(followUp).toMatchObject({
      branch: first.branch,
      prNumber: pr.number,
      instruction: 'use a constant here',
    });
    expect(followUp.context.reviewComment).toEqual({
      path: 'CHANGES.md',
      line: 1,
      diffHunk: '@@ -0,0 +1 @@\n+made',
    });
    expect(
      h.emulator.state.pulls.filter((p: { head: { ref: string } }) => p.head.ref === first.branch),
    ).toHaveLength(1);
    expect(trackingComments(pr.number)).toHaveLength(1);
  });
});

describe('GitHub failures', () => {
  it('retries 5xx and secondary rate limits on every call of the flow', async () => {
    for (const p of [
      /collaborators/,
      /contents/,
      /reactions/,
      /issues\/\d+\/comments$/,
      /pulls$/,
      /check-runs/,
    ]) {
      h.emulator.failNext({ path: p }, { status: 502 }, 1);
      h.emulator.failNext({ path: p }, { status: 429, headers: { 'retry-after': '0' } }, 1);
    }
    const issue = h.emulator.createIssue(h.repo, { title: 'Flaky GitHub', user: 'alice' });
    await h.send('issues', labelPayload(issue.number), { deliveryId: 'flaky-1' });
    const task = await waitFor(
      async () => (await h.plane.tasks.list()).find((t) => t.state === 'succeeded'),
      20_000,
    );
    await h.plane.quiesce();
    expect(task.prNumber).toEqual(expect.any(Number));
    expect(trackingComments(issue.number)).toHaveLength(1);
  });

  it('fails the task with a clear reason when opening the PR keeps failing', async () => {
    h.emulator.failNext({ method: 'POST', path: /\/pulls$/ }, { status: 500 }, 100);
    const issue = h.emulator.createIssue(h.repo, { title: 'Broken GitHub', user: 'alice' });
    await h.send('issues', labelPayload(issue.number), { deliveryId: 'broken-1' });
    const task = await waitFor(
      async () => (await h.plane.tasks.list()).find((t) => t.state === 'failed'),
      20_000,
    );
    expect(task.reason).toMatch(/GitHub: could not open a pull request/);
  });
});

describe('restart safety', () => {
  it('survives kill -9 mid-task: the next start fails the running task with a reason and runs nothing twice', async () => {
    await h.airlock.stop(); // the child process owns the database until it is killed
    const reader = new TaskStore(
      openSqliteStore(openDatabase(path.join(h.dir, 'airlock.sqlite'))),
      systemClock,
    );
    const child = spawn(
      process.execPath,
      [fileURLToPath(new URL('../helpers/crash-child.ts', import.meta.url))],
      {
        env: {
          PATH: process.env.PATH ?? '',
          DATA_DIR: h.dir,
          APP_ID: String(h.emulator.app.id),
          PRIVATE_KEY: h.emulator.app.privateKey,
          WEBHOOK_SECRET: h.emulator.app.webhookSecret,
          API_URL: h.emulator.apiUrl,
          APP_SLUG: h.emulator.app.slug,
        },
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    try {
      const [line] = (await once(child.stdout!, 'data')) as [Buffer];
      const { port } = JSON.parse(line.toString());
      const a = h.emulator.createIssue(h.repo, { title: 'Crash A', user: 'alice' });
      const b = h.emulator.createIssue(h.repo, { title: 'Crash B', user: 'alice' });
      const url = `http://127.0.0.1:${port}/api/github/webhooks`;
      await h.emulator.sendWebhook(url, 'issues', labelPayload(a.number), { deliveryId: 'crash-a' });
      await waitFor(
        async () => (await reader.list()).find((t) => t.issueNumber === a.number && t.state === 'running'),
        15_000,
      );
      await h.emulator.sendWebhook(url, 'issues', labelPayload(b.number), { deliveryId: 'crash-b' });
      await waitFor(async () => (await reader.list()).find((t) => t.issueNumber === b.number), 15_000);
    } finally {
      child.kill('SIGKILL');
      await once(child, 'exit').catch(() => {});
    }
    h.runner.behaviour = async () => ({ outcome: 'no_changes', summary: 'nothing to do' });
    await h.restart();
    const tasks = await h.plane.tasks.list();
    const running = tasks.find((t) => t.deliveryId === 'crash-a')!;
    const queued = tasks.find((t) => t.deliveryId === 'crash-b')!;
    expect(h.plane.recovery.failed).toEqual([running.id]);
    expect((await h.plane.tasks.get(running.id)).reason).toMatch(
      /^interrupted: airlock restarted while the task was running/,
    );
    await waitFor(
      async () => (await h.plane.tasks.get(queued.id)).state === 'succeeded',
      15_000,
      'the queued task to run after restart',
    ).catch(async (error) => {
      throw new Error(
        `${error.message}: ${JSON.stringify((await h.plane.tasks.list()).map((t) => [t.state, t.reason]))} ${h.logLines.slice(-5).join('')}`,
      );
    });
    expect(h.runner.runs).toEqual([queued.id]);
    expect(await h.plane.tasks.list()).toHaveLength(2);
  });
});
