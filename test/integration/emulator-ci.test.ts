import { createAppAuth } from '@octokit/auth-app';
import { Octokit } from '@octokit/rest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type GitHubEmulator, startGitHubEmulator } from '../emulator/index.ts';
import { pushCommit } from '../helpers/git-push.ts';

const quiet = { debug() {}, info() {}, warn() {}, error() {} };
let gh: GitHubEmulator;
let token: string;
let client: Octokit;

beforeAll(async () => {
  gh = await startGitHubEmulator();
  await gh.createRepo('acme', 'ci');
  const installationId = gh.installApp('acme');
  const auth = createAppAuth({
    appId: gh.app.id,
    privateKey: gh.app.privateKey,
    request: new Octokit({ baseUrl: gh.apiUrl, log: quiet }).request,
  });
  ({ token } = await auth({ type: 'installation', installationId }));
  client = new Octokit({ baseUrl: gh.apiUrl, auth: token, log: quiet });
});
afterAll(async () => {
  await gh.close();
});

describe('the CI endpoints of the emulator', () => {
  it('serves annotations, and job logs through a redirect to plain text, as GitHub does', async () => {
    const { run, jobs } = gh.addWorkflowRun('acme/ci', {
      name: 'CI',
      headSha: 'a'.repeat(40),
      headBranch: 'airlock/x',
      jobs: [
        {
          name: 'test',
          conclusion: 'failure',
          log: '2026-01-01T00:00:00.0000000Z Error: boom\n',
          annotations: [
            { path: 'src/a.ts', start_line: 3, end_line: 3, annotation_level: 'failure', message: 'boom' },
          ],
        },
      ],
    });
    const job = jobs[0]!;
    const { data: annotations } = await client.rest.checks.listAnnotations({
      owner: 'acme',
      repo: 'ci',
      check_run_id: job.id,
    });
    expect(annotations).toMatchObject([{ path: 'src/a.ts', start_line: 3, message: 'boom' }]);

    const raw = await fetch(`${gh.apiUrl}/repos/acme/ci/actions/jobs/${job.id}/logs`, {
      headers: { authorization: `token ${token}` },
      redirect: 'manual',
    });
    expect(raw.status).toBe(302);
    const download = await fetch(raw.headers.get('location')!);
    expect(download.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(await download.text()).toContain('Error: boom');
    const { data: log } = await client.rest.actions.downloadJobLogsForWorkflowRun({
      owner: 'acme',
      repo: 'ci',
      job_id: job.id,
    });
    expect(String(log)).toContain('Error: boom');

    const { data: runs } = await client.rest.actions.listWorkflowRunsForRepo({
      owner: 'acme',
      repo: 'ci',
      head_sha: 'a'.repeat(40),
    });
    expect(runs.workflow_runs.map((r) => [r.id, r.status, r.conclusion])).toEqual([
      [run.id, 'completed', 'failure'],
    ]);
    const { data: none } = await client.rest.actions.listWorkflowRunsForRepo({
      owner: 'acme',
      repo: 'ci',
      head_sha: 'b'.repeat(40),
    });
    expect(none.total_count).toBe(0);
  });

  it('marks a draft pull request ready for review through GraphQL, and only for a token that covers it', async () => {
    const remote = gh.gitUrl('acme', 'ci').replace('http://', `http://x-access-token:${token}@`);
    await pushCommit({ remote, base: 'main', branch: 'airlock/ready', files: { 'a.txt': 'a\n' } });
    const { data: pr } = await client.rest.pulls.create({
      owner: 'acme',
      repo: 'ci',
      head: 'airlock/ready',
      base: 'main',
      title: 'ready?',
      draft: true,
    });
    expect(pr.draft).toBe(true);
    const result = await client.graphql<{
      markPullRequestReadyForReview: { pullRequest: { isDraft: boolean } };
    }>(
      'mutation($id: ID!) { markPullRequestReadyForReview(input: { pullRequestId: $id }) { pullRequest { isDraft } } }',
      { id: pr.node_id },
    );
    expect(result.markPullRequestReadyForReview.pullRequest.isDraft).toBe(false);
    const { data: after } = await client.rest.pulls.get({
      owner: 'acme',
      repo: 'ci',
      pull_number: pr.number,
    });
    expect(after.draft).toBe(false);
    await expect(
      client.graphql(
        'mutation($id: ID!) { markPullRequestReadyForReview(input: { pullRequestId: $id }) { pullRequest { isDraft } } }',
        { id: 'PR_unknown' },
      ),
    ).rejects.toThrow(/Could not resolve to a node/);
  });
});
