import type {
  CheckRun,
  Comment,
  EmulatorState,
  Issue,
  Pull,
  Repo,
  ReviewComment,
  User,
} from './emulator-state.ts';
import type { Schema } from './github-shapes.ts';

/** Response shapes, limited to the fields GitHub documents that airlock (or Octokit) reads. */

export function userJson(user: User): Schema<'simple-user'> {
  return { login: user.login, id: user.id, node_id: `U_${user.id}`, type: user.type };
}

export function repoJson(repo: Repo, url: string, state: EmulatorState) {
  const owner = state.users.get(repo.owner);
  return {
    id: repo.id,
    node_id: `R_${repo.id}`,
    name: repo.name,
    full_name: repo.fullName,
    private: repo.private,
    visibility: repo.private ? 'private' : 'public',
    fork: repo.fork,
    default_branch: repo.defaultBranch,
    owner: owner ? userJson(owner) : { login: repo.owner, id: 1, node_id: 'O_1', type: 'Organization' },
    html_url: `${url}/${repo.fullName}`,
    clone_url: `${url}/${repo.fullName}.git`,
    ...(repo.parent ? { parent: { full_name: repo.parent } } : {}),
  } satisfies Schema<'repository'>;
}

export function installationJson(
  inst: { id: number; account: string; permissions: Record<string, string>; repositories: string[] | 'all' },
  state: EmulatorState,
  appId: number,
  appSlug: string,
): Schema<'installation'> {
  const account = state.users.get(inst.account);
  return {
    id: inst.id,
    app_id: appId,
    app_slug: appSlug,
    account: account ? userJson(account) : { login: inst.account, id: 1, type: 'Organization' },
    permissions: inst.permissions,
    repository_selection: inst.repositories === 'all' ? 'all' : 'selected',
    events: [
      'issues',
      'issue_comment',
      'pull_request',
      'pull_request_review_comment',
      'check_run',
      'check_suite',
    ],
    target_type: account?.type ?? 'Organization',
  };
}

export function issueJson(
  issue: Issue | Pull,
  state: EmulatorState,
  url: string,
  apiUrl: string,
): Schema<'issue'> {
  const isPull = 'head' in issue;
  return {
    id: issue.number + 100_000,
    node_id: isPull ? issue.node_id : `I_${issue.repo}_${issue.number}`,
    number: issue.number,
    title: issue.title,
    body: issue.body,
    state: issue.state,
    user: userJson(state.user(issue.user)),
    labels: issue.labels.map((name) => ({ name })),
    html_url: `${url}/${issue.repo}/${isPull ? 'pull' : 'issues'}/${issue.number}`,
    updated_at: issue.updatedAt,
    ...(isPull
      ? {
          pull_request: {
            url: `${apiUrl}/repos/${issue.repo}/pulls/${issue.number}`,
            html_url: `${url}/${issue.repo}/pull/${issue.number}`,
          },
        }
      : {}),
  };
}

export function commentJson(comment: Comment, state: EmulatorState, url: string): Schema<'issue-comment'> {
  return {
    id: comment.id,
    node_id: `IC_${comment.id}`,
    body: comment.body,
    user: userJson(state.user(comment.user)),
    html_url: `${url}/${comment.repo}/issues/${comment.issueNumber}#issuecomment-${comment.id}`,
    issue_url: `${url}/${comment.repo}/issues/${comment.issueNumber}`,
    created_at: comment.createdAt,
    updated_at: comment.updatedAt,
  };
}

export function reviewCommentJson(
  comment: ReviewComment,
  state: EmulatorState,
  url: string,
): Schema<'pull-request-review-comment'> {
  return {
    id: comment.id,
    node_id: `PRRC_${comment.id}`,
    body: comment.body,
    path: comment.path,
    // GitHub's schema has `line` as an optional number: absent, not null, for a file-level comment.
    ...(comment.line !== null ? { line: comment.line } : {}),
    user: userJson(state.user(comment.user)),
    html_url: `${url}/${comment.repo}/pull/${comment.pullNumber}#discussion_r${comment.id}`,
    created_at: comment.createdAt,
  };
}

export function pullJson(pull: Pull, state: EmulatorState, url: string): Schema<'pull-request'> {
  return {
    id: pull.number + 200_000,
    number: pull.number,
    node_id: pull.node_id,
    title: pull.title,
    body: pull.body,
    state: pull.state,
    draft: pull.draft,
    merged: pull.merged,
    user: userJson(state.user(pull.user)),
    labels: pull.labels.map((name) => ({ name })),
    html_url: `${url}/${pull.repo}/pull/${pull.number}`,
    head: {
      ref: pull.head.ref,
      sha: pull.head.sha,
      label: `${pull.head.repo.full_name.split('/')[0]}:${pull.head.ref}`,
      repo: pull.head.repo,
    },
    base: { ref: pull.base.ref, sha: pull.base.sha, repo: pull.base.repo },
  };
}

export function checkRunJson(run: CheckRun, url: string): Schema<'check-run'> {
  return {
    id: run.id,
    node_id: `CR_${run.id}`,
    name: run.name,
    head_sha: run.head_sha,
    status: run.status,
    conclusion: run.conclusion,
    details_url: run.details_url,
    html_url: `${url}/${run.repo}/runs/${run.id}`,
    started_at: run.started_at ?? null,
    completed_at: run.completed_at ?? null,
    output: {
      title: run.output?.title ?? null,
      summary: run.output?.summary ?? null,
      text: run.output?.text ?? null,
      annotations_count: run.annotations.length,
    },
    app: { slug: run.app.slug, name: run.app.slug },
    check_suite: run.check_suite_id ? { id: run.check_suite_id } : null,
  };
}
