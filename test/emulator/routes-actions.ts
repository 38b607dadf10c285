import type { Answer } from './github-shapes.ts';
import { paginate, REPO, type Route, repoFor } from './route-kit.ts';

/**
 * Listing an Actions repository's workflow runs, filtered as GitHub filters them (`head_sha`,
 * `branch`, `event`, `status`), so airlock can tell that a workflow has started but has no
 * completed check runs yet.
 */
export const actionsRoutes: Route[] = [
  [
    'GET',
    new RegExp(`^/repos/${REPO}/actions/runs$`),
    (c) => {
      const { repo } = repoFor(c, 'actions', 'read');
      const headSha = c.query.get('head_sha');
      const branch = c.query.get('branch');
      const event = c.query.get('event');
      const status = c.query.get('status');
      const runs = c.state.workflowRuns
        .filter(
          (r) =>
            r.repo === repo.fullName &&
            (!headSha || r.head_sha === headSha) &&
            (!branch || r.head_branch === branch) &&
            (!event || r.event === event) &&
            (!status || r.status === status || r.conclusion === status),
        )
        .sort((a, b) => b.id - a.id);
      const { page, headers } = paginate(c, `/repos/${repo.fullName}/actions/runs`, runs);
      return {
        body: {
          total_count: runs.length,
          workflow_runs: page.map((r) => ({
            id: r.id,
            name: r.name,
            head_sha: r.head_sha,
            head_branch: r.head_branch,
            event: r.event,
            status: r.status,
            conclusion: r.conclusion,
            check_suite_id: r.check_suite_id,
            html_url: `${c.url}/${r.repo}/actions/runs/${r.id}`,
            jobs_url: `${c.apiUrl}/repos/${r.repo}/actions/runs/${r.id}/jobs`,
          })),
        } satisfies Answer<'/repos/{owner}/{repo}/actions/runs', 'get'>,
        headers,
      };
    },
  ],
];
