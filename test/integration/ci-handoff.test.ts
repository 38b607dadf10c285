import { afterEach, describe, expect, it } from 'vitest';
import type { Task } from '../../src/tasks/task.ts';
import { taskPrompt } from '../../src/tasks/task-prompt.ts';
import type { CheckRun, CiJobInput, Pull, WorkflowRun } from '../emulator/index.ts';
import {
  type Harness,
  pushFileBehaviour,
  type RunBehaviour,
  startHarness,
} from '../helpers/control-plane-harness.ts';
import { waitFor } from '../helpers/wait-for.ts';
import { examplePayload } from '../helpers/webhook-examples.ts';

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** The prompts the runner double was given, by task id (assembled as the VM runner assembles them). */
let prompts: Map<string, string>;

async function start(airlockYml?: string): Promise<Harness> {
  h = await startHarness(airlockYml ? { files: { '.github/airlock.yml': airlockYml } } : {});
  prompts = new Map();
  behave(pushFileBehaviour('CHANGES.md', 'made by the test runner\n'));
  return h;
}

/** Runs `behaviour` for every task, recording each task's prompt first. */
function behave(behaviour: RunBehaviour): void {
  const harness = h!;
  harness.runner.behaviour = async (task, ctx, hh) => {
    const earlier = await harness.plane.tasks.onBranch(task.repoFullName, task.branch);
    prompts.set(task.id, taskPrompt(task, undefined, earlier).text);
    return behaviour(task, ctx, hh);
  };
}

const repoId = () => h!.emulator.state.repos.get(h!.repo)!.id;
const bot = () => ({ login: `${h!.emulator.app.slug}[bot]`, id: 9001, type: 'Bot' });

/** CI events about airlock's own pushes are sent by airlock's bot, as on GitHub. */
function ciWorld(sender = bot()) {
  return { repo: { id: repoId(), fullName: h!.repo }, sender, installationId: h!.installationId };
}

function labelPayload(issueNumber: number) {
  const payload = examplePayload('issues', 'labeled', {
    repo: { id: repoId(), fullName: h!.repo },
    sender: { login: 'alice', id: 101 },
    installationId: h!.installationId,
  });
  payload.issue.number = issueNumber;
  payload.issue.pull_request = undefined;
  payload.label = { ...payload.label, name: 'airlock' };
  return payload;
}

function checkSuitePayload(sha: string, branch: string, conclusion: string) {
  const payload = examplePayload(
    'check_suite',
    'completed',
    ciWorld(),
    (p) => (p.check_suite as { app?: { slug?: string } }).app?.slug === 'github-actions',
  );
  const suite = h!.emulator.state.checkSuites.find((s) => s.head_sha === sha);
  payload.check_suite = {
    ...payload.check_suite,
    id: suite?.id ?? 1,
    head_sha: sha,
    after: sha,
    head_branch: branch,
    status: 'completed',
    conclusion,
  };
  return payload;
}

function checkRunPayload(run: CheckRun, branch: string) {
  const payload = examplePayload(
    'check_run',
    'completed',
    ciWorld(),
    (p) => (p.check_run as { conclusion?: string }).conclusion === 'failure',
  );
  payload.check_run = {
    ...payload.check_run,
    id: run.id,
    name: run.name,
    head_sha: run.head_sha,
    status: run.status,
    conclusion: run.conclusion,
    app: { ...payload.check_run.app, slug: run.app.slug },
    check_suite: {
      ...payload.check_run.check_suite,
      id: run.check_suite_id,
      head_sha: run.head_sha,
      head_branch: branch,
    },
  };
  return payload;
}

function workflowRunPayload(run: WorkflowRun, headRepo = h!.repo) {
  const payload = examplePayload(
    'workflow_run',
    'completed',
    ciWorld(),
    (p) => (p.workflow_run as { conclusion?: string }).conclusion === 'success',
  );
  payload.workflow_run = {
    ...payload.workflow_run,
    id: run.id,
    name: run.name,
    head_sha: run.head_sha,
    head_branch: run.head_branch,
    status: run.status,
    conclusion: run.conclusion,
    check_suite_id: run.check_suite_id,
    head_repository: { ...payload.workflow_run.head_repository, full_name: headRepo },
    repository: { ...payload.workflow_run.repository, full_name: h!.repo },
  };
  return payload;
}

/** Labels a new issue and waits until its task has pushed and opened a draft PR. */
async function agentPr(title = 'Make the widget spin'): Promise<{ task: Task; pr: Pull; issue: number }> {
  const harness = h!;
  const issue = harness.emulator.createIssue(harness.repo, { title, user: 'alice' });
  await harness.send('issues', labelPayload(issue.number), { deliveryId: `label-${issue.number}` });
  const task = await waitFor(
    async () =>
      (await harness.plane.tasks.list({ issueNumber: issue.number })).find((t) => t.state === 'succeeded'),
    15_000,
    'the agent task to succeed',
  );
  await harness.plane.quiesce();
  const pr = harness.emulator.state.pulls.find((p) => p.number === task.prNumber);
  if (!pr) throw new Error(`task ${task.id} opened no PR`);
  return { task, pr, issue: issue.number };
}

/** Reports a CI workflow on the head of a task (as GitHub Actions would) and returns it. */
function runWorkflow(task: Task, jobs: CiJobInput[], name = 'CI') {
  return h!.emulator.addWorkflowRun(h!.repo, { name, headSha: task.headSha!, headBranch: task.branch, jobs });
}

/** Comments on the PR that mention `text`, other than tracking comments. */
const prComments = (pr: number, text: string) =>
  h!.emulator.state.comments.filter(
    (c) => c.issueNumber === pr && !c.body.startsWith('**airlock** · task') && c.body.includes(text),
  );
const graphqlCalls = () => h!.emulator.requests.filter((r) => r.path.endsWith('/graphql'));
const ciFixes = async () => (await h!.plane.tasks.list()).filter((t) => t.kind === 'ci_fix');

/** A job log as Actions serves it: timestamped lines, the error near the end, bigger than the cap. */
function actionsLog(error: string, stamp = '2026-03-01T10:00:00.1234567Z'): string {
  const lines = [`${stamp} FIRST LINE OF A LONG LOG`];
  for (let i = 0; i < 400; i++) lines.push(`${stamp} ok ${i} - widget case ${i} passes`);
  lines.push(`${stamp} FAIL test/widget.test.ts > spins`, `${stamp} ${error}`);
  lines.push(`${stamp} ##[error]Process completed with exit code 1.`);
  return `${lines.join('\n')}\n`;
}

/**
 * A failed Actions job. Actions always adds the generic exit-code annotation; `annotate: false` is
 * a test runner that reports its error in the log only.
 */
function failingJob(error: string, options: { stamp?: string; annotate?: boolean } = {}): CiJobInput {
  const specific = {
    path: 'src/widget.ts',
    start_line: 12,
    end_line: 12,
    annotation_level: 'failure',
    message: error,
  };
  return {
    name: 'unit tests',
    conclusion: 'failure',
    annotations: [
      ...(options.annotate === false ? [] : [specific]),
      {
        path: '.github',
        start_line: 1,
        end_line: 1,
        annotation_level: 'failure',
        message: 'Process completed with exit code 1.',
      },
    ],
    log: actionsLog(error, options.stamp),
  };
}

describe('when every check passes', () => {
  it('marks the draft PR ready, asks the requester to review, and says so once however many events come', async () => {
    const harness = await start();
    const { task, pr, issue } = await agentPr();
    expect(pr.draft).toBe(true);
    const { run } = runWorkflow(task, [
      { name: 'unit tests', conclusion: 'success', log: 'all good\n' },
      { name: 'lint', conclusion: 'success' },
    ]);

    const response = await harness.send('workflow_run', workflowRunPayload(run), { deliveryId: 'wr-pass' });
    expect(response.status).toBe(200);
    await waitFor(() => !pr.draft, 10_000, 'the PR to leave draft');
    await harness.plane.quiesce();

    expect(harness.emulator.state.reviewRequests).toEqual([
      { repo: harness.repo, number: pr.number, reviewers: ['alice'] },
    ]);
    const [passed] = prComments(pr.number, 'CI passed');
    expect(passed?.body).toContain(task.headSha!.slice(0, 7));
    expect(passed?.body).toContain('ready for review');
    expect(passed?.body).toContain('@alice');
    const tracking = harness.emulator.state.comments.find(
      (c) => c.issueNumber === issue && c.body.startsWith(`**airlock** · task \`${task.id}\``),
    );
    expect(tracking?.body).toContain('CI passed');
    expect(await harness.audit.types(task.id)).toContain('ci.verdict');

    // GitHub redelivers, and every other completion event for the same commit arrives too.
    await harness.send('workflow_run', workflowRunPayload(run), { deliveryId: 'wr-pass' });
    await harness.send('check_suite', checkSuitePayload(task.headSha!, task.branch, 'success'), {
      deliveryId: 'cs-pass',
    });
    for (const job of harness.emulator.state.checkRuns.filter(
      (r) => r.check_suite_id === run.check_suite_id,
    )) {
      await harness.send('check_run', checkRunPayload(job, task.branch), { deliveryId: `cr-${job.id}` });
    }
    await harness.plane.quiesce();
    expect(await harness.plane.deliveries.get('cs-pass')).toMatchObject({
      status: 'done',
      outcome: 'already judged',
    });
    expect(harness.emulator.state.reviewRequests).toHaveLength(1);
    expect(graphqlCalls()).toHaveLength(1);
    expect(prComments(pr.number, 'CI passed')).toHaveLength(1);
    expect(await ciFixes()).toHaveLength(0);
  });

  it('waits while a check or a workflow is still running, then judges on the last completion', async () => {
    const harness = await start();
    const { task, pr } = await agentPr();
    const { run: ci, jobs } = runWorkflow(task, [
      { name: 'unit tests', conclusion: 'success' },
      { name: 'e2e', conclusion: null, status: 'in_progress' },
    ]);
    // A second workflow has started but has not created its jobs' check runs yet.
    const { run: preview } = runWorkflow(task, [], 'Preview');
    Object.assign(preview, { status: 'in_progress', conclusion: null });
    await harness.send('check_run', checkRunPayload(jobs[0]!, task.branch), { deliveryId: 'cr-first' });
    await harness.plane.quiesce();
    expect(await harness.plane.deliveries.get('cr-first')).toMatchObject({
      status: 'done',
      outcome: 'waiting for the other checks',
    });
    expect(pr.draft).toBe(true);

    Object.assign(jobs[1]!, { status: 'completed', conclusion: 'success' });
    Object.assign(ci, { status: 'completed', conclusion: 'success' });
    await harness.send('check_run', checkRunPayload(jobs[1]!, task.branch), { deliveryId: 'cr-last' });
    await harness.plane.quiesce();
    expect(await harness.plane.deliveries.get('cr-last')).toMatchObject({
      status: 'done',
      outcome: 'waiting for workflow Preview',
    });
    expect(pr.draft).toBe(true);

    const previewJob = harness.emulator.addCheckRun(harness.repo, {
      name: 'deploy preview',
      conclusion: 'success',
      headSha: task.headSha!,
    });
    previewJob.check_suite_id = preview.check_suite_id;
    Object.assign(preview, { status: 'completed', conclusion: 'success' });
    await harness.send('workflow_run', workflowRunPayload(preview), { deliveryId: 'wr-preview' });
    await waitFor(() => !pr.draft, 10_000, 'the PR to leave draft');
    await harness.plane.quiesce();
    expect(harness.emulator.state.reviewRequests.map((r) => r.reviewers)).toEqual([['alice']]);
  });

  it('leaves the PR as it is when the repository turns both actions off', async () => {
    const harness = await start('ci:\n  ready_for_review: false\n  request_reviewer: false\n');
    const { task, pr } = await agentPr();
    runWorkflow(task, [{ name: 'unit tests', conclusion: 'success' }]);
    await harness.send('check_suite', checkSuitePayload(task.headSha!, task.branch, 'success'), {
      deliveryId: 'cs-off',
    });
    await waitFor(() => prComments(pr.number, 'CI passed').length === 1, 10_000, 'the CI comment');
    await harness.plane.quiesce();
    expect(pr.draft).toBe(true);
    expect(harness.emulator.state.reviewRequests).toHaveLength(0);
    expect(graphqlCalls()).toHaveLength(0);
  });

  it('judges a commit whose CI finished before the task did, once the task ends', async () => {
    const harness = await start();
    const base = pushFileBehaviour('CHANGES.md', 'quick CI\n');
    behave(async (task, ctx, hh) => {
      const result = await base(task, ctx, hh);
      // CI is faster than airlock here: it completes while the task is still pushing.
      const { run } = hh.emulator.addWorkflowRun(hh.repo, {
        name: 'CI',
        headSha: result.headSha!,
        headBranch: task.branch,
        jobs: [{ name: 'unit tests', conclusion: 'success' }],
      });
      const response = await hh.send('workflow_run', workflowRunPayload(run), { deliveryId: 'early' });
      expect(response.status).toBe(200);
      await waitFor(
        async () => (await hh.plane.deliveries.get('early'))?.status === 'done',
        10_000,
        'the early event',
      );
      return result;
    });
    const { task, pr } = await agentPr();
    expect((await harness.plane.deliveries.get('early'))?.outcome).toMatch(/still pushing/);
    await waitFor(() => !pr.draft, 10_000, 'the PR to leave draft after the task ended');
    await harness.plane.quiesce();
    expect(prComments(pr.number, 'CI passed')).toHaveLength(1);
    expect(harness.emulator.state.reviewRequests).toHaveLength(1);
    expect(task.state).toBe('succeeded');
  });

  it('marks the PR ready when a re-run turns a failed check green', async () => {
    const harness = await start();
    const { task, pr } = await agentPr();
    const { jobs } = runWorkflow(task, [failingJob('Error: flaky network')]);
    await harness.send('check_run', checkRunPayload(jobs[0]!, task.branch), { deliveryId: 'flaky-1' });
    await waitFor(() => prComments(pr.number, 'CI failed').length === 1, 10_000, 'the failure comment');
    expect(pr.draft).toBe(true);

    // A person re-runs the job: GitHub adds a new check run with the same name to the suite.
    const rerun = harness.emulator.addCheckRun(harness.repo, {
      name: 'unit tests',
      conclusion: 'success',
      headSha: task.headSha!,
    });
    rerun.check_suite_id = jobs[0]!.check_suite_id;
    await harness.send('check_run', checkRunPayload(rerun, task.branch), { deliveryId: 'flaky-2' });
    await waitFor(() => !pr.draft, 10_000, 'the PR to leave draft after the re-run');
    await harness.plane.quiesce();
    expect(prComments(pr.number, 'CI passed')).toHaveLength(1);
  });
});

describe('when a check fails', () => {
  it('starts a follow-up on the same branch with the check, its annotations and its log tail, and stops when the failure repeats', async () => {
    const harness = await start('ci:\n  autofix: true\n');
    behave(pushFileBehaviour('CHANGES.md', 'attempt\n'));
    const { task, pr, issue } = await agentPr();
    const error = 'TypeError: widget.spin is not a function';
    runWorkflow(task, [failingJob(error), { name: 'lint', conclusion: 'success' }]);

    await harness.send('check_suite', checkSuitePayload(task.headSha!, task.branch, 'failure'), {
      deliveryId: 'cs-fail-1',
    });
    const fix = await waitFor(
      async () => (await ciFixes()).find((t) => t.state === 'succeeded'),
      15_000,
      'the CI follow-up to run',
    );
    await harness.plane.quiesce();
    expect(fix).toMatchObject({
      branch: task.branch,
      prNumber: pr.number,
      parentTaskId: task.id,
      attempt: 1,
      actorLogin: 'alice',
    });
    expect(fix.context.reviewComment).toBeUndefined();

    const prompt = prompts.get(fix.id)!;
    expect(prompt).toContain('## Failing CI checks');
    expect(prompt).toContain('<untrusted source="CI output of this branch">\ncheck: unit tests');
    expect(prompt).toContain(`src/widget.ts:12: ${error}`);
    expect(prompt).toContain('FAIL test/widget.test.ts > spins');
    expect(prompt).not.toContain('FIRST LINE OF A LONG LOG');
    expect(prompt).not.toContain('2026-03-01T10:00:00');
    expect(prompt).not.toContain('check: lint');
    const logBlock = (
      /check: unit tests[\s\S]*?log \(last lines\):\n([\s\S]*?)\n<\/untrusted>/.exec(prompt)?.[1] ?? ''
    ).trim();
    expect(Buffer.byteLength(logBlock)).toBeLessThanOrEqual(8 * 1024);
    expect(logBlock.length).toBeGreaterThan(1000);

    const started = prComments(pr.number, 'CI failed');
    expect(started).toHaveLength(1);
    expect(started[0]!.body).toContain('`unit tests`');
    expect(started[0]!.body).toContain(fix.id);
    const fixTracking = harness.emulator.state.comments.filter((c) =>
      c.body.startsWith(`**airlock** · task \`${fix.id}\``),
    );
    expect(fixTracking.map((c) => c.issueNumber)).toEqual([pr.number]);
    const originalTracking = harness.emulator.state.comments.find(
      (c) => c.issueNumber === issue && c.body.startsWith(`**airlock** · task \`${task.id}\``),
    );
    expect(originalTracking?.body).toContain('CI failed');
    expect(originalTracking?.body).toContain(fix.id);
    expect(harness.emulator.state.pulls).toHaveLength(1);
    expect(pr.head.sha).toBe(fix.headSha);

    // The fix did not help: the same error (at another time) comes back on the new head.
    runWorkflow(fix, [failingJob(error, { stamp: '2026-03-01T11:22:33.7654321Z' })]);
    const again = harness.emulator.state.checkRuns.find(
      (r) => r.head_sha === fix.headSha && r.name === 'unit tests',
    )!;
    await harness.send('check_run', checkRunPayload(again, fix.branch), { deliveryId: 'cr-fail-2' });
    await waitFor(() => prComments(pr.number, 'CI failed').length === 2, 10_000, 'the stop comment');
    await harness.plane.quiesce();
    const stopped = prComments(pr.number, 'CI failed')[1]!;
    expect(stopped.body).toMatch(/not starting a follow-up: the same failure came back/);
    expect(await ciFixes()).toHaveLength(1);
    expect(pr.draft).toBe(true);
  });

  it('bounds the follow-ups by ci.max_attempts (2 by default)', async () => {
    const harness = await start('ci:\n  autofix: true\n');
    const { task, pr } = await agentPr();
    let head = task;
    for (let n = 1; n <= 3; n++) {
      runWorkflow(head, [failingJob(`Error: failure number ${'abc'[n - 1]} is new`, { annotate: false })]);
      await harness.send('check_suite', checkSuitePayload(head.headSha!, head.branch, 'failure'), {
        deliveryId: `cs-bound-${n}`,
      });
      await waitFor(() => prComments(pr.number, 'CI failed').length === n, 15_000, `CI verdict ${n}`);
      if (n === 3) break;
      const fix = await waitFor(
        async () => (await ciFixes()).find((t) => t.attempt === n && t.state === 'succeeded'),
        15_000,
        `follow-up ${n}`,
      );
      expect(fix.headSha).not.toBe(head.headSha);
      head = fix;
    }
    await harness.plane.quiesce();
    expect((await ciFixes()).map((t) => t.attempt)).toEqual([2, 1]);
    const last = prComments(pr.number, 'CI failed')[2]!;
    expect(last.body).toMatch(/limit of 2 CI follow-up attempts is reached \(`ci.max_attempts`\)/);
    expect(harness.emulator.state.pulls).toHaveLength(1);
  });

  it('only comments when autofix is off (the default)', async () => {
    const harness = await start();
    const { task, pr } = await agentPr();
    runWorkflow(task, [failingJob('Error: nope')]);
    await harness.send('check_suite', checkSuitePayload(task.headSha!, task.branch, 'failure'), {
      deliveryId: 'cs-off',
    });
    await waitFor(() => prComments(pr.number, 'CI failed').length === 1, 10_000, 'the failure comment');
    await harness.plane.quiesce();
    expect(prComments(pr.number, 'CI failed')[0]!.body).toContain('`ci.autofix: false`');
    expect(await ciFixes()).toHaveLength(0);
    expect(pr.draft).toBe(true);
    expect(harness.emulator.state.reviewRequests).toHaveLength(0);
  });

  it('does not auto-fix when the branch changes a workflow file', async () => {
    const harness = await start('ci:\n  autofix: true\n');
    behave(pushFileBehaviour('.github/workflows/ci.yml', 'on: push\n# '));
    const { task, pr } = await agentPr();
    runWorkflow(task, [failingJob('Error: workflow is broken')]);
    await harness.send('check_suite', checkSuitePayload(task.headSha!, task.branch, 'failure'), {
      deliveryId: 'cs-wf',
    });
    await waitFor(() => prComments(pr.number, 'CI failed').length === 1, 10_000, 'the failure comment');
    await harness.plane.quiesce();
    expect(prComments(pr.number, 'CI failed')[0]!.body).toMatch(
      /changes CI workflow files \(\.github\/workflows\/ci\.yml\)/,
    );
    expect(await ciFixes()).toHaveLength(0);
  });

  it('does not auto-fix work that came from a pull request from a fork', async () => {
    // mallory's pull request would wait for approval before it runs; that gate is not the subject here.
    const harness = await start('allow_forks: true\nci:\n  autofix: true\napproval:\n  before_run: never\n');
    await harness.emulator.createRepo('mallory', 'widgets', { fork: { of: harness.repo } });
    harness.emulator.addUser('mallory', { id: 104 });
    const forkPrNumber = harness.emulator.state.nextNumber(harness.repo);
    const main = (await harness.emulator.branchSha(harness.repo, 'main'))!;
    harness.emulator.state.pulls.push({
      repo: harness.repo,
      number: forkPrNumber,
      node_id: `PR_fork_${forkPrNumber}`,
      title: 'Spin faster',
      body: '',
      state: 'open',
      draft: false,
      merged: false,
      user: 'mallory',
      labels: [],
      updatedAt: new Date().toISOString(),
      head: { ref: 'main', sha: main, repo: { id: 4242, full_name: 'mallory/widgets', fork: true } },
      base: { ref: 'main', sha: main, repo: { id: repoId(), full_name: harness.repo } },
    });
    const comment = examplePayload('issue_comment', 'created', {
      repo: { id: repoId(), fullName: harness.repo },
      sender: { login: 'alice', id: 101 },
      installationId: harness.installationId,
    });
    comment.issue.number = forkPrNumber;
    comment.issue.pull_request = { url: 'x' };
    comment.comment.body = '/airlock make the widget spin faster';
    comment.comment.performed_via_github_app = null;
    await harness.send('issue_comment', comment, { deliveryId: 'fork-command' });
    const task = await waitFor(
      async () => (await harness.plane.tasks.list()).find((t) => t.state === 'succeeded'),
      15_000,
      'the task on the fork PR',
    );
    await harness.plane.quiesce();
    expect(task.context.fork).toBe(true);
    // The fork's branch is out of reach: the work starts from the PR's head as this repository keeps it.
    expect(task.start).toEqual({ from: 'pull_head', pull: forkPrNumber });
    expect(task.baseRef).toBe('main');
    const pr = harness.emulator.state.pulls.find((p) => p.head.ref === task.branch)!;
    runWorkflow(task, [failingJob('Error: fork work fails')]);
    await harness.send('check_suite', checkSuitePayload(task.headSha!, task.branch, 'failure'), {
      deliveryId: 'cs-fork',
    });
    await waitFor(() => prComments(pr.number, 'CI failed').length === 1, 10_000, 'the failure comment');
    await harness.plane.quiesce();
    expect(prComments(pr.number, 'CI failed')[0]!.body).toContain('the pull request comes from a fork');
    expect(await ciFixes()).toHaveLength(0);
  });
});

describe('events airlock does not act on', () => {
  it('ignores branches it does not own, forks, stale commits and its own check', async () => {
    const harness = await start('ci:\n  autofix: true\n');
    const { task, pr } = await agentPr();
    const requestsBefore = harness.emulator.requests.length;

    const main = (await harness.emulator.branchSha(harness.repo, 'main'))!;
    const onMain = runWorkflow({ ...task, headSha: main, branch: 'main' }, [failingJob('Error: main')]);
    await harness.send('workflow_run', workflowRunPayload(onMain.run), { deliveryId: 'main-run' });
    await harness.send('check_suite', checkSuitePayload(main, 'main', 'failure'), {
      deliveryId: 'main-suite',
    });
    await harness.send('check_run', checkRunPayload(onMain.jobs[0]!, 'feature/x'), {
      deliveryId: 'feature-run',
    });

    // A fork can name its branch like airlock's; its workflow runs are not airlock's.
    const forked = runWorkflow(task, [failingJob('Error: fork')]);
    await harness.send('workflow_run', workflowRunPayload(forked.run, 'mallory/widgets'), {
      deliveryId: 'fork-run',
    });

    const own = harness.emulator.state.checkRuns.find((r) => r.app.slug === harness.emulator.app.slug)!;
    await harness.send('check_run', checkRunPayload(own, task.branch), { deliveryId: 'own-run' });

    for (const id of ['main-run', 'main-suite', 'feature-run', 'fork-run', 'own-run']) {
      expect(await harness.plane.deliveries.get(id), id).toBeUndefined();
    }

    // An airlock branch, but a commit that is not the task's head.
    await harness.send('check_suite', checkSuitePayload(main, task.branch, 'failure'), {
      deliveryId: 'stale',
    });
    await harness.plane.quiesce();
    expect(await harness.plane.deliveries.get('stale')).toMatchObject({
      status: 'done',
      outcome: 'not the head commit of an airlock branch',
    });
    expect(harness.emulator.requests.slice(requestsBefore).filter((r) => r.method !== 'GET')).toEqual([]);
    expect(await ciFixes()).toHaveLength(0);
    expect(pr.draft).toBe(true);
  });
});
