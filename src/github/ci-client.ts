import { GitHubError } from '../errors.ts';
import { splitRepo } from '../tasks/task.ts';
import { call } from './github-client.ts';
import type { AirlockOctokit } from './octokit-factory.ts';

/** A check run on a commit, as CI reported it. */
export interface CheckRunInfo {
  id: number;
  name: string;
  status: string;
  conclusion: string | null;
  appSlug: string | null;
  checkSuiteId: number | null;
  /** The run's output (title, summary, text), for checks that are not Actions jobs and have no log. */
  output: string;
}

/**
 * The latest check run of each check on a commit (all pages). A re-run adds a new check run with
 * the same name to the same suite; only the newest one speaks for the check.
 */
export async function checkRunsForCommit(
  octokit: AirlockOctokit,
  fullName: string,
  sha: string,
): Promise<CheckRunInfo[]> {
  const { owner, repo } = splitRepo(fullName);
  const runs = await call(`list check runs of ${sha.slice(0, 7)} in ${fullName}`, () =>
    octokit.paginate(octokit.rest.checks.listForRef, {
      owner,
      repo,
      ref: sha,
      filter: 'latest',
      per_page: 100,
    }),
  );
  const latest = new Map<string, CheckRunInfo>();
  for (const r of runs) {
    const info: CheckRunInfo = {
      id: r.id,
      name: r.name,
      status: r.status,
      conclusion: r.conclusion ?? null,
      appSlug: r.app?.slug ?? null,
      checkSuiteId: r.check_suite?.id ?? null,
      output: [r.output?.title, r.output?.summary, r.output?.text].filter(Boolean).join('\n\n'),
    };
    const key = `${info.appSlug}\u0000${info.checkSuiteId}\u0000${info.name}`;
    const seen = latest.get(key);
    if (!seen || seen.id < info.id) latest.set(key, info);
  }
  return [...latest.values()];
}

/**
 * Names of the Actions workflow runs on a commit that have not completed. A workflow that has
 * started but not yet created its jobs' check runs shows up here and nowhere else.
 */
export async function unfinishedWorkflowRuns(
  octokit: AirlockOctokit,
  fullName: string,
  sha: string,
): Promise<string[]> {
  const { owner, repo } = splitRepo(fullName);
  const response = await call(`list workflow runs of ${sha.slice(0, 7)} in ${fullName}`, () =>
    octokit.rest.actions.listWorkflowRunsForRepo({ owner, repo, head_sha: sha, per_page: 100 }),
  ).catch((error: unknown) => {
    // Without `actions: read` (or with Actions disabled) the check runs are all there is to go on.
    if (error instanceof GitHubError && (error.status === 403 || error.status === 404)) return undefined;
    throw error;
  });
  if (!response) return [];
  return response.data.workflow_runs
    .filter((r) => r.status !== 'completed')
    .map((r) => r.name ?? `run ${r.id}`);
}

/** A check run's annotations (first page, enough for a prompt). */
export async function checkRunAnnotations(
  octokit: AirlockOctokit,
  fullName: string,
  checkRunId: number,
): Promise<Array<{ path: string; line: number | null; message: string }>> {
  const { owner, repo } = splitRepo(fullName);
  const { data } = await call(`read annotations of check run ${checkRunId}`, () =>
    octokit.rest.checks.listAnnotations({ owner, repo, check_run_id: checkRunId, per_page: 50 }),
  );
  return data.map((a) => ({ path: a.path, line: a.start_line ?? null, message: a.message ?? '' }));
}

/**
 * The log of an Actions job (for Actions check runs the check run id is the job id), or undefined
 * when the check was not made by Actions or the log is gone.
 */
export async function actionsJobLog(
  octokit: AirlockOctokit,
  fullName: string,
  jobId: number,
): Promise<string | undefined> {
  const { owner, repo } = splitRepo(fullName);
  try {
    const response = await call(`download the log of job ${jobId}`, () =>
      octokit.rest.actions.downloadJobLogsForWorkflowRun({ owner, repo, job_id: jobId }),
    );
    const data: unknown = response.data;
    if (typeof data === 'string') return data;
    if (data instanceof ArrayBuffer) return Buffer.from(data).toString('utf8');
    return undefined;
  } catch (error) {
    if (error instanceof GitHubError && (error.status === 404 || error.status === 410)) return undefined;
    throw error;
  }
}

/** Paths changed between two refs. */
export async function changedPaths(
  octokit: AirlockOctokit,
  fullName: string,
  base: string,
  head: string,
): Promise<string[]> {
  const { owner, repo } = splitRepo(fullName);
  const { data } = await call(`compare ${base}...${head} in ${fullName}`, () =>
    octokit.rest.repos.compareCommitsWithBasehead({ owner, repo, basehead: `${base}...${head}` }),
  );
  return (data.files ?? []).map((f) => f.filename);
}

/** Marks a draft PR ready for review (GitHub offers this through GraphQL only). */
export async function markReadyForReview(octokit: AirlockOctokit, pullNodeId: string): Promise<void> {
  await call('mark the pull request ready for review', () =>
    octokit.graphql(
      'mutation($id: ID!) { markPullRequestReadyForReview(input: { pullRequestId: $id }) { pullRequest { isDraft } } }',
      { id: pullNodeId },
    ),
  );
}

/** Requests a review from people. */
export async function requestReview(
  octokit: AirlockOctokit,
  fullName: string,
  pull: number,
  logins: string[],
): Promise<void> {
  const { owner, repo } = splitRepo(fullName);
  await call(`request a review on #${pull}`, () =>
    octokit.rest.pulls.requestReviewers({ owner, repo, pull_number: pull, reviewers: logins }),
  );
}
