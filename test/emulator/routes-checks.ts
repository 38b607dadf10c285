import { HttpError } from './emulator-auth.ts';
import type {
  CheckAnnotation,
  CheckRun,
  CheckRunConclusion,
  CheckRunStatus,
  WorkflowRun,
} from './emulator-state.ts';
import type { Answer, Schema } from './github-shapes.ts';
import { checkRunJson } from './json-shapes.ts';
import { paginate, REPO, type Route, type RouteContext, repoFor, requiredString } from './route-kit.ts';

function findRun(c: RouteContext, repo: string): CheckRun {
  const run = c.state.checkRuns.find((r) => r.id === Number(c.params[2]) && r.repo === repo);
  if (!run) throw new HttpError(404, 'Not Found');
  return run;
}

const STATUSES = ['queued', 'in_progress', 'completed'] as const satisfies readonly CheckRunStatus[];
const CONCLUSIONS = [
  'action_required',
  'cancelled',
  'failure',
  'neutral',
  'success',
  'skipped',
  'timed_out',
] as const satisfies readonly NonNullable<CheckRunConclusion>[];

/** A body field that must be one of GitHub's values for it, as GitHub answers 422 otherwise. */
function member<T extends string>(value: unknown, allowed: readonly T[], field: string): T | undefined {
  if (value === undefined) return undefined;
  if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) return value as T;
  throw new HttpError(
    422,
    `Invalid request.\n\nFor 'properties/${field}', ${JSON.stringify(value)} is not a member of [${allowed.join(', ')}].`,
  );
}

/** Applies the writable fields of a check-run body; output annotations are appended, as on GitHub. */
function applyCheckRunFields(c: RouteContext, run: CheckRun): void {
  const b = c.body;
  if (typeof b.name === 'string') run.name = b.name;
  const status = member(b.status, STATUSES, 'status');
  if (status) run.status = status;
  if (typeof b.details_url === 'string') run.details_url = b.details_url;
  if (typeof b.started_at === 'string') run.started_at = b.started_at;
  const conclusion = member(b.conclusion, CONCLUSIONS, 'conclusion');
  if (conclusion) {
    run.conclusion = conclusion;
    run.status = 'completed';
  }
  if (run.status === 'completed' && !run.completed_at) {
    run.completed_at =
      typeof b.completed_at === 'string' ? b.completed_at : new Date(c.state.now()).toISOString();
  }
  const output = b.output as (CheckRun['output'] & { annotations?: CheckAnnotation[] }) | undefined;
  if (output) {
    const { annotations, ...rest } = output;
    run.output = rest;
    if (Array.isArray(annotations)) run.annotations.push(...annotations);
  }
  if (run.status === 'completed' && !run.conclusion) {
    throw new HttpError(422, 'Invalid request.\n\n"conclusion" is required when status is completed.');
  }
}

function workflowRunJson(run: WorkflowRun, c: RouteContext): Schema<'workflow-run'> {
  return {
    id: run.id,
    name: run.name,
    head_sha: run.head_sha,
    head_branch: run.head_branch,
    event: run.event,
    status: run.status,
    conclusion: run.conclusion,
    check_suite_id: run.check_suite_id,
    html_url: `${c.url}/${run.repo}/actions/runs/${run.id}`,
    jobs_url: `${c.apiUrl}/repos/${run.repo}/actions/runs/${run.id}/jobs`,
  };
}

function jobJson(job: CheckRun, run: WorkflowRun, c: RouteContext): Schema<'job'> {
  return {
    id: job.id,
    run_id: run.id,
    name: job.name,
    head_sha: job.head_sha,
    status: job.status,
    conclusion: job.conclusion,
    // GitHub's job always has a start time (a string, never null); a run created queued has none yet.
    ...(job.started_at !== undefined ? { started_at: job.started_at } : {}),
    completed_at: job.completed_at ?? null,
    html_url: `${c.url}/${run.repo}/actions/runs/${run.id}/job/${job.id}`,
    check_run_url: `${c.apiUrl}/repos/${run.repo}/check-runs/${job.id}`,
    steps: [],
  };
}

/** Checks (runs, suites, annotations) and the Actions endpoints airlock reads CI results from. */
export const checkRoutes: Route[] = [
  [
    'POST',
    new RegExp(`^/repos/${REPO}/check-runs$`),
    (c) => {
      const { repo } = repoFor(c, 'checks', 'write');
      const run: CheckRun = {
        id: c.state.nextId(),
        repo: repo.fullName,
        name: requiredString(c, 'name'),
        head_sha: requiredString(c, 'head_sha'),
        status: 'queued',
        conclusion: null,
        details_url: null,
        output: null,
        app: { slug: c.app.slug },
        annotations: [],
        started_at: new Date(c.state.now()).toISOString(),
        completed_at: null,
      };
      applyCheckRunFields(c, run);
      c.state.checkRuns.push(run);
      return { status: 201, body: checkRunJson(run, c.url) };
    },
  ],
  [
    'PATCH',
    new RegExp(`^/repos/${REPO}/check-runs/(\\d+)$`),
    (c) => {
      const { repo } = repoFor(c, 'checks', 'write');
      const run = findRun(c, repo.fullName);
      if (run.app.slug !== c.app.slug)
        throw new HttpError(
          403,
          'Invalid app_id `' +
            c.app.id +
            '` - check run can only be modified by the GitHub App that created it.',
        );
      applyCheckRunFields(c, run);
      return { body: checkRunJson(run, c.url) };
    },
  ],
  [
    'GET',
    new RegExp(`^/repos/${REPO}/check-runs/(\\d+)$`),
    (c) => {
      const { repo } = repoFor(c, 'checks', 'read');
      return { body: checkRunJson(findRun(c, repo.fullName), c.url) };
    },
  ],
  [
    'GET',
    new RegExp(`^/repos/${REPO}/commits/([^/]+)/check-runs$`),
    (c) => {
      const { repo } = repoFor(c, 'checks', 'read');
      const name = c.query.get('check_name');
      const status = c.query.get('status');
      const runs = c.state.checkRuns.filter(
        (r) =>
          r.repo === repo.fullName &&
          r.head_sha === decodeURIComponent(c.params[2]!) &&
          (!name || r.name === name) &&
          (!status || r.status === status),
      );
      const { page, headers } = paginate(
        c,
        `/repos/${repo.fullName}/commits/${c.params[2]}/check-runs`,
        runs,
      );
      return {
        body: {
          total_count: runs.length,
          check_runs: page.map((r) => checkRunJson(r, c.url)),
        } satisfies Answer<'/repos/{owner}/{repo}/commits/{ref}/check-runs', 'get'>,
        headers,
      };
    },
  ],
  [
    'GET',
    new RegExp(`^/repos/${REPO}/check-runs/(\\d+)/annotations$`),
    (c) => {
      const { repo } = repoFor(c, 'checks', 'read');
      const run = findRun(c, repo.fullName);
      const all = run.annotations.map(
        (a): Schema<'check-annotation'> => ({
          path: a.path,
          start_line: a.start_line,
          end_line: a.end_line,
          annotation_level: a.annotation_level,
          title: a.title ?? null,
          message: a.message,
          blob_href: `${c.url}/${repo.fullName}/blob/${run.head_sha}/${a.path}`,
        }),
      );
      const { page, headers } = paginate(c, `/repos/${repo.fullName}/check-runs/${run.id}/annotations`, all);
      return { body: page, headers };
    },
  ],
  [
    'GET',
    new RegExp(`^/repos/${REPO}/check-suites/(\\d+)$`),
    (c) => {
      const { repo } = repoFor(c, 'checks', 'read');
      const suite = c.state.checkSuites.find((s) => s.id === Number(c.params[2]) && s.repo === repo.fullName);
      if (!suite) throw new HttpError(404, 'Not Found');
      const runs = c.state.checkRuns.filter((r) => r.check_suite_id === suite.id);
      return {
        body: {
          // Field by field rather than a spread of the stored suite, so its shape is checked.
          id: suite.id,
          head_sha: suite.head_sha,
          head_branch: suite.head_branch,
          status: suite.status,
          conclusion: suite.conclusion,
          app: { slug: suite.app.slug },
          latest_check_runs_count: runs.length,
        } satisfies Schema<'check-suite'>,
      };
    },
  ],
  [
    'GET',
    new RegExp(`^/repos/${REPO}/actions/runs/(\\d+)$`),
    (c) => {
      const { repo } = repoFor(c, 'actions', 'read');
      const run = c.state.workflowRuns.find((r) => r.id === Number(c.params[2]) && r.repo === repo.fullName);
      if (!run) throw new HttpError(404, 'Not Found');
      return { body: workflowRunJson(run, c) };
    },
  ],
  [
    'GET',
    new RegExp(`^/repos/${REPO}/actions/runs/(\\d+)/jobs$`),
    (c) => {
      const { repo } = repoFor(c, 'actions', 'read');
      const run = c.state.workflowRuns.find((r) => r.id === Number(c.params[2]) && r.repo === repo.fullName);
      if (!run) throw new HttpError(404, 'Not Found');
      const jobs = run.job_ids.flatMap((id) => c.state.checkRuns.filter((r) => r.id === id));
      const { page, headers } = paginate(c, `/repos/${repo.fullName}/actions/runs/${run.id}/jobs`, jobs);
      return {
        body: {
          total_count: jobs.length,
          jobs: page.map((j) => jobJson(j, run, c)),
        } satisfies Answer<'/repos/{owner}/{repo}/actions/runs/{run_id}/jobs', 'get'>,
        headers,
      };
    },
  ],
  [
    'GET',
    new RegExp(`^/repos/${REPO}/actions/jobs/(\\d+)/logs$`),
    (c) => {
      const { repo } = repoFor(c, 'actions', 'read');
      const run = findRun(c, repo.fullName);
      if (run.log === undefined) throw new HttpError(404, 'Not Found');
      // GitHub answers with a redirect to a short-lived download URL that needs no token.
      return { status: 302, headers: { location: `${c.url}/_logs/${run.id}` } };
    },
  ],
];
