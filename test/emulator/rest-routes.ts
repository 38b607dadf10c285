import { execFileSync } from 'node:child_process';
import { HttpError, newTokenValue, requireRepoAccess, verifyAppJwt } from './emulator-auth.ts';
import type { CheckRun, Comment, EmulatorState, Issue, Pull, Repo, Token } from './emulator-state.ts';

/** What a route handler gets. */
export interface RouteContext {
  method: string;
  params: string[];
  query: URLSearchParams;
  body: Record<string, unknown>;
  authorization: string | undefined;
  token: () => Token | undefined;
  state: EmulatorState;
  app: { id: number; slug: string; privateKey: string };
  url: string;
}

export type RouteResult = { status?: number; body?: unknown; headers?: Record<string, string> };
type Route = [
  method: string,
  pattern: RegExp,
  handler: (c: RouteContext) => RouteResult | Promise<RouteResult>,
];

const R = '([^/]+)/([^/]+)';

/** The REST endpoints airlock calls, behaving like GitHub where airlock relies on it. */
export const routes: Route[] = [
  [
    'GET',
    /^\/app$/,
    (c) => {
      verifyAppJwt(c.authorization, c.app.id, c.app.privateKey);
      return {
        body: {
          id: c.app.id,
          slug: c.app.slug,
          name: c.app.slug,
          owner: { login: 'emulator' },
          html_url: `${c.url}/apps/${c.app.slug}`,
        },
      };
    },
  ],
  [
    'GET',
    /^\/app\/installations$/,
    (c) => {
      verifyAppJwt(c.authorization, c.app.id, c.app.privateKey);
      return { body: [...c.state.installations.values()].map((i) => installationJson(i)) };
    },
  ],
  [
    'GET',
    new RegExp(`^/repos/${R}/installation$`),
    (c) => {
      verifyAppJwt(c.authorization, c.app.id, c.app.privateKey);
      const repo = repoOf(c);
      const inst = [...c.state.installations.values()].find((i) => covers(i, repo));
      if (!inst) throw new HttpError(404, 'Not Found');
      return { body: installationJson(inst) };
    },
  ],
  [
    'POST',
    /^\/app\/installations\/(\d+)\/access_tokens$/,
    (c) => {
      verifyAppJwt(c.authorization, c.app.id, c.app.privateKey);
      const inst = c.state.installations.get(Number(c.params[0]));
      if (!inst) throw new HttpError(404, 'Not Found');
      const all = [...c.state.repos.values()].filter((r) => covers(inst, r));
      let repos = all;
      const names = c.body.repositories as string[] | undefined;
      const ids = c.body.repository_ids as number[] | undefined;
      if (names || ids) {
        repos = all.filter((r) => names?.includes(r.name) || ids?.includes(r.id));
        if (repos.length !== (names?.length ?? 0) + (ids?.length ?? 0)) {
          throw new HttpError(
            422,
            'There is at least one repository that does not exist or is not accessible to the parent installation.',
          );
        }
      }
      const asked = (c.body.permissions as Record<string, 'read' | 'write'> | undefined) ?? inst.permissions;
      for (const [perm, level] of Object.entries(asked)) {
        const has = inst.permissions[perm];
        if (!has || (level === 'write' && has !== 'write')) {
          throw new HttpError(
            422,
            `The permissions requested are not granted to this installation (${perm}:${level}).`,
          );
        }
      }
      const token: Token = {
        token: newTokenValue(),
        installationId: inst.id,
        repositories: repos.map((r) => r.fullName),
        permissions: { ...asked, metadata: 'read' },
        expiresAt: Date.now() + 3600_000,
        revoked: false,
      };
      c.state.tokens.push(token);
      return {
        status: 201,
        body: {
          token: token.token,
          expires_at: new Date(token.expiresAt).toISOString(),
          permissions: token.permissions,
          repository_selection: names || ids ? 'selected' : 'all',
          repositories: repos.map((r) => repoJson(r, c.url)),
        },
      };
    },
  ],
  [
    'DELETE',
    /^\/installation\/token$/,
    (c) => {
      const token = c.token();
      if (!token) throw new HttpError(401, 'Requires authentication');
      token.revoked = true;
      return { status: 204 };
    },
  ],
  [
    'GET',
    new RegExp(`^/repos/${R}$`),
    (c) => {
      const repo = repoOf(c);
      requireRepoAccess(c.token(), repo.fullName, 'metadata', 'read');
      return { body: repoJson(repo, c.url) };
    },
  ],
  [
    'GET',
    new RegExp(`^/repos/${R}/contents/(.+)$`),
    (c) => {
      const repo = repoOf(c);
      requireRepoAccess(c.token(), repo.fullName, 'contents', 'read');
      const ref = c.query.get('ref') ?? repo.defaultBranch;
      const file = decodeURIComponent(c.params[2]!);
      let content: Buffer;
      try {
        content = execFileSync('git', ['--git-dir', repo.dir, 'show', `${ref}:${file}`], {
          stdio: ['ignore', 'pipe', 'ignore'],
        });
      } catch {
        throw new HttpError(404, 'Not Found');
      }
      return {
        body: {
          type: 'file',
          name: file.split('/').pop(),
          path: file,
          encoding: 'base64',
          content: content.toString('base64'),
          size: content.length,
        },
      };
    },
  ],
  [
    'GET',
    new RegExp(`^/repos/${R}/collaborators/([^/]+)/permission$`),
    (c) => {
      const repo = repoOf(c);
      requireRepoAccess(c.token(), repo.fullName, 'metadata', 'read');
      const login = c.params[2]!;
      const user = c.state.users.get(login);
      if (!user) throw new HttpError(404, 'Not Found');
      const role = c.state.permissions.get(`${repo.fullName}:${login}`) ?? 'none';
      const permission = role === 'maintain' ? 'write' : role === 'triage' ? 'read' : role;
      return { body: { permission, role_name: role, user: userJson(user) } };
    },
  ],
  [
    'GET',
    new RegExp(`^/repos/${R}/compare/(.+)\\.\\.\\.(.+)$`),
    (c) => {
      const repo = repoOf(c);
      requireRepoAccess(c.token(), repo.fullName, 'contents', 'read');
      const out = git(repo, ['diff', '--name-status', `${c.params[2]}...${c.params[3]}`]);
      const files = out
        .split('\n')
        .filter(Boolean)
        .map((l) => ({ filename: l.split('\t').pop(), status: l[0] === 'A' ? 'added' : 'modified' }));
      return { body: { status: 'ahead', files, total_commits: files.length } };
    },
  ],
  [
    'GET',
    new RegExp(`^/repos/${R}/issues/(\\d+)$`),
    (c) => {
      const repo = repoOf(c);
      requireRepoAccess(c.token(), repo.fullName, 'issues', 'read');
      return { body: issueJson(findIssue(c, repo), c) };
    },
  ],
  [
    'GET',
    new RegExp(`^/repos/${R}/issues/(\\d+)/comments$`),
    (c) => {
      const repo = repoOf(c);
      requireRepoAccess(c.token(), repo.fullName, 'issues', 'read');
      const n = Number(c.params[2]);
      return {
        body: c.state.comments
          .filter((m) => m.repo === repo.fullName && m.issueNumber === n)
          .map((m) => commentJson(m, c)),
      };
    },
  ],
  [
    'POST',
    new RegExp(`^/repos/${R}/issues/(\\d+)/comments$`),
    (c) => {
      const repo = repoOf(c);
      const token = requireRepoAccess(c.token(), repo.fullName, 'issues', 'write');
      const n = Number(c.params[2]);
      if (
        !c.state.issues.some((i) => i.repo === repo.fullName && i.number === n) &&
        !c.state.pulls.some((p) => p.repo === repo.fullName && p.number === n)
      ) {
        throw new HttpError(404, 'Not Found');
      }
      const now = new Date().toISOString();
      const comment: Comment = {
        id: c.state.nextId(),
        repo: repo.fullName,
        issueNumber: n,
        body: String(c.body.body ?? ''),
        user: appLogin(c, token),
        createdAt: now,
        updatedAt: now,
      };
      c.state.comments.push(comment);
      return { status: 201, body: commentJson(comment, c) };
    },
  ],
  [
    'PATCH',
    new RegExp(`^/repos/${R}/issues/comments/(\\d+)$`),
    (c) => {
      const repo = repoOf(c);
      requireRepoAccess(c.token(), repo.fullName, 'issues', 'write');
      const comment = c.state.comments.find((m) => m.id === Number(c.params[2]) && m.repo === repo.fullName);
      if (!comment) throw new HttpError(404, 'Not Found');
      comment.body = String(c.body.body ?? '');
      comment.updatedAt = new Date().toISOString();
      return { body: commentJson(comment, c) };
    },
  ],
  [
    'POST',
    new RegExp(`^/repos/${R}/(issues|issues/comments|pulls/comments)/(\\d+)/reactions$`),
    (c) => {
      const repo = repoOf(c);
      const token = requireRepoAccess(
        c.token(),
        repo.fullName,
        c.params[2] === 'pulls/comments' ? 'pull_requests' : 'issues',
        'write',
      );
      const reaction = {
        id: c.state.nextId(),
        repo: repo.fullName,
        subject: `${c.params[2]}/${c.params[3]}`,
        content: String(c.body.content),
        user: appLogin(c, token),
      };
      c.state.reactions.push(reaction);
      return { status: 201, body: { id: reaction.id, content: reaction.content } };
    },
  ],
  [
    'GET',
    new RegExp(`^/repos/${R}/pulls$`),
    (c) => {
      const repo = repoOf(c);
      requireRepoAccess(c.token(), repo.fullName, 'pull_requests', 'read');
      const head = c.query.get('head');
      const state = c.query.get('state') ?? 'open';
      const list = c.state.pulls.filter(
        (p) =>
          p.repo === repo.fullName &&
          (state === 'all' || p.state === state) &&
          (!head || `${repo.owner}:${p.head.ref}` === head),
      );
      return { body: list.map((p) => pullJson(p, c)) };
    },
  ],
  [
    'POST',
    new RegExp(`^/repos/${R}/pulls$`),
    (c) => {
      const repo = repoOf(c);
      const token = requireRepoAccess(c.token(), repo.fullName, 'pull_requests', 'write');
      const head = String(c.body.head ?? '');
      const base = String(c.body.base ?? '');
      const headSha = branchShaSync(repo, head);
      if (!headSha || !branchShaSync(repo, base))
        throw new HttpError(422, 'Validation Failed: head or base does not exist');
      if (
        c.state.pulls.some(
          (p) => p.repo === repo.fullName && p.state === 'open' && p.head.ref === head && p.base.ref === base,
        )
      ) {
        throw new HttpError(422, `A pull request already exists for ${repo.owner}:${head}.`);
      }
      const number = c.state.nextNumber(repo.fullName);
      const pull: Pull = {
        repo: repo.fullName,
        number,
        node_id: `PR_${repo.id}_${number}`,
        title: String(c.body.title ?? ''),
        body: String(c.body.body ?? ''),
        state: 'open',
        draft: Boolean(c.body.draft),
        user: appLogin(c, token),
        head: { ref: head, sha: headSha, repo: { full_name: repo.fullName, fork: false } },
        base: { ref: base, repo: { full_name: repo.fullName } },
      };
      c.state.pulls.push(pull);
      return { status: 201, body: pullJson(pull, c) };
    },
  ],
  [
    'GET',
    new RegExp(`^/repos/${R}/pulls/(\\d+)$`),
    (c) => {
      const repo = repoOf(c);
      requireRepoAccess(c.token(), repo.fullName, 'pull_requests', 'read');
      return { body: pullJson(findPull(c, repo), c) };
    },
  ],
  [
    'PATCH',
    new RegExp(`^/repos/${R}/pulls/(\\d+)$`),
    (c) => {
      const repo = repoOf(c);
      requireRepoAccess(c.token(), repo.fullName, 'pull_requests', 'write');
      const pull = findPull(c, repo);
      if (typeof c.body.body === 'string') pull.body = c.body.body;
      if (typeof c.body.title === 'string') pull.title = c.body.title;
      if (c.body.draft === false) pull.draft = false;
      return { body: pullJson(pull, c) };
    },
  ],
  [
    'POST',
    new RegExp(`^/repos/${R}/pulls/(\\d+)/requested_reviewers$`),
    (c) => {
      const repo = repoOf(c);
      requireRepoAccess(c.token(), repo.fullName, 'pull_requests', 'write');
      const pull = findPull(c, repo);
      c.state.reviewRequests.push({
        repo: repo.fullName,
        number: pull.number,
        reviewers: (c.body.reviewers as string[]) ?? [],
      });
      return { status: 201, body: pullJson(pull, c) };
    },
  ],
  [
    'POST',
    new RegExp(`^/repos/${R}/check-runs$`),
    (c) => {
      const repo = repoOf(c);
      requireRepoAccess(c.token(), repo.fullName, 'checks', 'write');
      const run: CheckRun = {
        id: c.state.nextId(),
        repo: repo.fullName,
        name: String(c.body.name),
        head_sha: String(c.body.head_sha),
        status: String(c.body.status ?? 'queued'),
        conclusion: (c.body.conclusion as string) ?? null,
        details_url: (c.body.details_url as string) ?? null,
        output: (c.body.output as CheckRun['output']) ?? null,
        app: { slug: c.app.slug },
        annotations: [],
      };
      c.state.checkRuns.push(run);
      return { status: 201, body: run };
    },
  ],
  [
    'PATCH',
    new RegExp(`^/repos/${R}/check-runs/(\\d+)$`),
    (c) => {
      const repo = repoOf(c);
      requireRepoAccess(c.token(), repo.fullName, 'checks', 'write');
      const run = c.state.checkRuns.find((r) => r.id === Number(c.params[2]) && r.repo === repo.fullName);
      if (!run) throw new HttpError(404, 'Not Found');
      for (const key of ['status', 'conclusion', 'details_url', 'output'] as const) {
        if (c.body[key] !== undefined) (run as unknown as Record<string, unknown>)[key] = c.body[key];
      }
      return { body: run };
    },
  ],
  [
    'GET',
    new RegExp(`^/repos/${R}/commits/([^/]+)/check-runs$`),
    (c) => {
      const repo = repoOf(c);
      requireRepoAccess(c.token(), repo.fullName, 'checks', 'read');
      const runs = c.state.checkRuns.filter((r) => r.repo === repo.fullName && r.head_sha === c.params[2]);
      return {
        body: { total_count: runs.length, check_runs: runs.map(({ annotations: _a, log: _l, ...r }) => r) },
      };
    },
  ],
  [
    'GET',
    new RegExp(`^/repos/${R}/check-runs/(\\d+)/annotations$`),
    (c) => {
      const repo = repoOf(c);
      requireRepoAccess(c.token(), repo.fullName, 'checks', 'read');
      const run = c.state.checkRuns.find((r) => r.id === Number(c.params[2]) && r.repo === repo.fullName);
      if (!run) throw new HttpError(404, 'Not Found');
      return { body: run.annotations };
    },
  ],
  [
    'GET',
    new RegExp(`^/repos/${R}/actions/jobs/(\\d+)/logs$`),
    (c) => {
      const repo = repoOf(c);
      requireRepoAccess(c.token(), repo.fullName, 'actions', 'read');
      const run = c.state.checkRuns.find((r) => r.id === Number(c.params[2]) && r.repo === repo.fullName);
      if (!run?.log) throw new HttpError(404, 'Not Found');
      return { status: 302, headers: { location: `${c.url}/_logs/${run.id}` } };
    },
  ],
  [
    'POST',
    /^\/graphql$/,
    (c) => {
      const token = c.token();
      const query = String(c.body.query ?? '');
      const id = (c.body.variables as { id?: string } | undefined)?.id;
      if (!query.includes('markPullRequestReadyForReview'))
        throw new HttpError(400, 'the emulator only supports markPullRequestReadyForReview');
      const pull = c.state.pulls.find((p) => p.node_id === id);
      if (!pull)
        return {
          body: { errors: [{ message: `Could not resolve to a node with the global id of '${id}'` }] },
        };
      requireRepoAccess(token, pull.repo, 'pull_requests', 'write');
      pull.draft = false;
      return { body: { data: { markPullRequestReadyForReview: { pullRequest: { isDraft: false } } } } };
    },
  ],
];

function repoOf(c: RouteContext): Repo {
  const repo = c.state.repos.get(`${c.params[0]}/${c.params[1]}`);
  if (!repo) throw new HttpError(404, 'Not Found');
  return repo;
}

function covers(inst: { account: string; repositories: string[] | 'all' }, repo: Repo): boolean {
  return inst.repositories === 'all'
    ? repo.owner === inst.account
    : inst.repositories.includes(repo.fullName);
}

function findIssue(c: RouteContext, repo: Repo): Issue {
  const issue = c.state.issues.find((i) => i.repo === repo.fullName && i.number === Number(c.params[2]));
  if (!issue) throw new HttpError(404, 'Not Found');
  return issue;
}

function findPull(c: RouteContext, repo: Repo): Pull {
  const pull = c.state.pulls.find((p) => p.repo === repo.fullName && p.number === Number(c.params[2]));
  if (!pull) throw new HttpError(404, 'Not Found');
  return pull;
}

function appLogin(c: RouteContext, _token: Token): string {
  return `${c.app.slug}[bot]`;
}

function git(repo: Repo, args: string[]): string {
  return execFileSync('git', ['--git-dir', repo.dir, ...args], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
  });
}

/** The sha of a branch, or undefined. */
export function branchShaSync(repo: Repo, branch: string): string | undefined {
  try {
    return git(repo, ['rev-parse', '--verify', `refs/heads/${branch}`]).trim();
  } catch {
    return undefined;
  }
}

function userJson(user: { login: string; id: number; type: string }) {
  return { login: user.login, id: user.id, type: user.type };
}

function repoJson(repo: Repo, url: string) {
  return {
    id: repo.id,
    node_id: `R_${repo.id}`,
    name: repo.name,
    full_name: repo.fullName,
    private: repo.private,
    fork: repo.fork,
    default_branch: repo.defaultBranch,
    owner: { login: repo.owner, id: 1, type: 'Organization' },
    html_url: `${url}/${repo.fullName}`,
    clone_url: `${url}/${repo.fullName}.git`,
  };
}

function installationJson(inst: { id: number; account: string; permissions: Record<string, string> }) {
  return {
    id: inst.id,
    account: { login: inst.account },
    permissions: inst.permissions,
    repository_selection: 'all',
  };
}

function issueJson(issue: Issue, c: RouteContext) {
  return {
    number: issue.number,
    title: issue.title,
    body: issue.body,
    state: issue.state,
    user: userJson(c.state.user(issue.user)),
    labels: issue.labels.map((name) => ({ name })),
    html_url: `${c.url}/${issue.repo}/issues/${issue.number}`,
  };
}

function commentJson(comment: Comment, c: RouteContext) {
  return {
    id: comment.id,
    body: comment.body,
    user: userJson(
      c.state.users.get(comment.user) ?? {
        login: comment.user,
        id: 1,
        type: comment.user.endsWith('[bot]') ? 'Bot' : 'User',
      },
    ),
    html_url: `${c.url}/${comment.repo}/issues/${comment.issueNumber}#issuecomment-${comment.id}`,
    created_at: comment.createdAt,
    updated_at: comment.updatedAt,
  };
}

function pullJson(pull: Pull, c: RouteContext) {
  return {
    number: pull.number,
    node_id: pull.node_id,
    title: pull.title,
    body: pull.body,
    state: pull.state,
    draft: pull.draft,
    user: { login: pull.user, id: 1, type: 'Bot' },
    html_url: `${c.url}/${pull.repo}/pull/${pull.number}`,
    head: { ref: pull.head.ref, sha: pull.head.sha, repo: pull.head.repo },
    base: { ref: pull.base.ref, repo: pull.base.repo },
  };
}
