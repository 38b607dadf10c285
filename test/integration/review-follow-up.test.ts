import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Task } from '../../src/tasks/task.ts';
import type { Pull } from '../emulator/index.ts';
import { type Harness, pushFileBehaviour, startHarness } from '../helpers/control-plane-harness.ts';
import { waitFor } from '../helpers/wait-for.ts';
import { examplePayload } from '../helpers/webhook-examples.ts';

let h: Harness;
beforeEach(async () => {
  h = await startHarness();
});
afterEach(async () => {
  await h.close();
});

const world = (login = 'alice', id = 101) => ({
  repo: { id: h.emulator.state.repos.get(h.repo)!.id, fullName: h.repo },
  sender: { login, id },
  installationId: h.installationId,
});

/** Labels an issue and waits for the draft PR of its task. */
async function agentPr(): Promise<{ task: Task; pr: Pull }> {
  const issue = h.emulator.createIssue(h.repo, { title: 'Make the widget spin', user: 'alice' });
  const label = examplePayload('issues', 'labeled', world());
  label.issue.number = issue.number;
  label.issue.pull_request = undefined;
  label.label = { ...label.label, name: 'airlock' };
  await h.send('issues', label, { deliveryId: 'label' });
  const task = await waitFor(
    async () => (await h.plane.tasks.list()).find((t) => t.state === 'succeeded'),
    15_000,
  );
  await h.plane.quiesce();
  return { task, pr: h.emulator.state.pulls.find((p) => p.number === task.prNumber)! };
}

/** Adds a comment to the PR's conversation and returns the issue_comment.created payload for it. */
function prComment(pr: Pull, body: string) {
  const { id } = h.emulator.addComment(h.repo, pr.number, { body, user: 'alice' });
  const payload = examplePayload('issue_comment', 'created', world());
  payload.issue.number = pr.number;
  payload.issue.title = pr.title;
  payload.issue.pull_request = { url: `${h.emulator.apiUrl}/repos/${h.repo}/pulls/${pr.number}` };
  payload.comment = { ...payload.comment, id, body, performed_via_github_app: null };
  return payload;
}

const followUps = async () => (await h.plane.tasks.list()).filter((t) => t.kind === 'follow_up');
const branchPulls = (branch: string) => h.emulator.state.pulls.filter((p) => p.head.ref === branch);
const trackingOf = (taskId: string) =>
  h.emulator.state.comments.filter((c) => c.body.startsWith(`**airlock** · task \`${taskId}\``));

describe('a reviewer addressing the app on an airlock PR', () => {
  it('turns a changes-requested review into a follow-up that updates the same PR', async () => {
    const { task, pr } = await agentPr();
    const review = examplePayload('pull_request_review', 'submitted', world());
    review.pull_request = {
      ...review.pull_request,
      number: pr.number,
      title: pr.title,
      head: { ...review.pull_request.head, ref: pr.head.ref, sha: pr.head.sha, repo: pr.head.repo },
      base: { ...review.pull_request.base, ref: pr.base.ref, repo: pr.base.repo },
    };
    review.review = {
      ...review.review,
      state: 'changes_requested',
      body: '@airlock-test please handle the empty widget too',
    };
    await h.send('pull_request_review', review, { deliveryId: 'review-1' });
    const followUp = await waitFor(
      async () => (await followUps()).find((t) => t.state === 'succeeded'),
      15_000,
    );
    await h.plane.quiesce();

    expect(followUp).toMatchObject({
      branch: task.branch,
      prNumber: pr.number,
      instruction: 'please handle the empty widget too',
      actorLogin: 'alice',
    });
    expect(branchPulls(task.branch)).toHaveLength(1);
    expect(h.emulator.state.pulls).toHaveLength(1);
    expect(pr.head.sha).toBe(followUp.headSha);
    expect(pr.body).toContain(`Closes #${task.issueNumber}`);
    expect(pr.body).toContain(`task \`${followUp.id}\``);
    expect(trackingOf(followUp.id).map((c) => c.issueNumber)).toEqual([pr.number]);
    const pushes = h.emulator.state.pushes.filter((p) => p.repo === h.repo);
    expect(new Set(pushes.map((p) => p.ref))).toEqual(new Set([`refs/heads/${task.branch}`]));
  });

  it('queues a second request behind the running one, says so, and runs them one after another', async () => {
    const { task, pr } = await agentPr();
    const gates: Array<() => void> = [];
    const active: string[] = [];
    let overlap = false;
    const push = pushFileBehaviour('CHANGES.md', 'follow-up\n');
    h.runner.behaviour = async (t, ctx, hh) => {
      if (active.length) overlap = true;
      active.push(t.id);
      try {
        await new Promise<void>((resolve, reject) => {
          gates.push(resolve);
          ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason));
        });
        return await push(t, ctx, hh);
      } finally {
        active.splice(active.indexOf(t.id), 1);
      }
    };

    await h.send('issue_comment', prComment(pr, '/airlock rename spin to rotate'), {
      deliveryId: 'c1',
    });
    const first = await waitFor(
      async () => (await followUps()).find((t) => h.runner.runs.includes(t.id)),
      10_000,
      'the first follow-up to start',
    );
    const secondComment = prComment(pr, '@airlock-test also update the docs');
    await h.send('issue_comment', secondComment, { deliveryId: 'c2' });
    const second = await waitFor(
      async () => (await followUps()).find((t) => t.id !== first.id),
      10_000,
      'the second follow-up',
    );
    await waitFor(
      () => trackingOf(second.id)[0]?.body.includes(`Waiting for task \`${first.id}\``),
      10_000,
      'the queued acknowledgement',
    );
    const acknowledged = h.emulator.state.reactions.filter(
      (r) => r.subject === `issues/comments/${secondComment.comment.id}`,
    );
    expect(acknowledged.map((r) => r.content)).toEqual(['eyes']);
    expect((await h.plane.tasks.get(second.id)).state).toBe('queued');
    expect(second).toMatchObject({ branch: task.branch, prNumber: pr.number });

    gates.shift()?.();
    await waitFor(
      async () => (await h.plane.tasks.get(first.id)).state === 'succeeded',
      15_000,
      'first to finish',
    );
    await waitFor(() => gates.length === 1, 10_000, 'the second to start');
    gates.shift()?.();
    await waitFor(
      async () => (await h.plane.tasks.get(second.id)).state === 'succeeded',
      15_000,
      'second to finish',
    );
    await h.plane.quiesce();

    expect(overlap).toBe(false);
    expect(h.runner.runs.slice(-2)).toEqual([first.id, second.id]);
    expect(branchPulls(task.branch)).toHaveLength(1);
    expect(pr.head.sha).toBe((await h.plane.tasks.get(second.id)).headSha);
    expect(trackingOf(second.id)).toHaveLength(1);
    expect(trackingOf(second.id)[0]!.body).toContain('✅ Done');
    expect((await h.plane.tasks.get(second.id)).instruction).toBe('also update the docs');
  });
});
