import { HttpError } from './emulator-auth.ts';
import type { Pull, Repo } from './emulator-state.ts';
import { gitText, resolveRev } from './git-cli.ts';
import { pullJson, reviewCommentJson } from './json-shapes.ts';
import {
  appLogin,
  findPull,
  paginate,
  REPO,
  type Route,
  type RouteContext,
  repoFor,
  requiredString,
} from './route-kit.ts';
import { diffFiles } from './routes-repos.ts';

/**
 * The head repository of `head` (`branch` or `owner:branch`) for a pull request into `base`:
 * the base itself or a fork of it.
 */
function headRepoOf(c: RouteContext, base: Repo, head: string): { repo: Repo; ref: string } {
  const colon = head.indexOf(':');
  if (colon < 0 || head.slice(0, colon) === base.owner) return { repo: base, ref: head.slice(colon + 1) };
  const owner = head.slice(0, colon);
  const fork = [...c.state.repos.values()].find((r) => r.owner === owner && r.parent === base.fullName);
  if (!fork) throw new HttpError(422, 'Validation Failed: head does not exist');
  return { repo: fork, ref: head.slice(colon + 1) };
}

/** Keeps `refs/pull/N/head` in the base repository and the PR's head sha in step with the head branch. */
async function refreshHead(c: RouteContext, pull: Pull): Promise<void> {
  if (pull.state !== 'open') return;
  const base = c.state.repos.get(pull.repo)!;
  const headRepo = c.state.repos.get(pull.head.repo.full_name);
  const sha = headRepo && (await resolveRev(headRepo.dir, `refs/heads/${pull.head.ref}`));
  if (!headRepo || !sha) return;
  if (headRepo !== base) {
    await gitText(base.dir, [
      'fetch',
      '--quiet',
      headRepo.dir,
      `+refs/heads/${pull.head.ref}:refs/pull/${pull.number}/head`,
    ]);
  } else {
    await gitText(base.dir, ['update-ref', `refs/pull/${pull.number}/head`, sha]);
  }
  pull.head.sha = sha;
}

/** Pull requests: create, list by head, read, update, files, review comments, reviewers. */
export const pullRoutes: Route[] = [
  [
    'GET',
    new RegExp(`^/repos/${REPO}/pulls$`),
    async (c) => {
      const { repo } = repoFor(c, 'pull_requests', 'read');
      const head = c.query.get('head');
      const base = c.query.get('base');
      const state = c.query.get('state') ?? 'open';
      const list = c.state.pulls.filter(
        (p) =>
          p.repo === repo.fullName &&
          (state === 'all' || p.state === state) &&
          (!base || p.base.ref === base) &&
          (!head || `${p.head.repo.full_name.split('/')[0]}:${p.head.ref}` === head),
      );
      for (const pull of list) await refreshHead(c, pull);
      const { page, headers } = paginate(
        c,
        `/repos/${repo.fullName}/pulls`,
        list.map((p) => pullJson(p, c.state, c.url)),
      );
      return { body: page, headers };
    },
  ],
  [
    'POST',
    new RegExp(`^/repos/${REPO}/pulls$`),
    async (c) => {
      const { repo } = repoFor(c, 'pull_requests', 'write');
      const head = requiredString(c, 'head');
      const baseRef = requiredString(c, 'base');
      requiredString(c, 'title');
      const headSide = headRepoOf(c, repo, head);
      const headSha = await resolveRev(headSide.repo.dir, `refs/heads/${headSide.ref}`);
      const baseSha = await resolveRev(repo.dir, `refs/heads/${baseRef}`);
      if (!headSha) throw new HttpError(422, 'Validation Failed: head does not exist');
      if (!baseSha) throw new HttpError(422, 'Validation Failed: base does not exist');
      const duplicate = c.state.pulls.some(
        (p) =>
          p.repo === repo.fullName &&
          p.state === 'open' &&
          p.head.ref === headSide.ref &&
          p.head.repo.full_name === headSide.repo.fullName &&
          p.base.ref === baseRef,
      );
      if (duplicate)
        throw new HttpError(422, `A pull request already exists for ${headSide.repo.owner}:${headSide.ref}.`);
      if (headSide.repo === repo && headSha === baseSha) {
        throw new HttpError(422, `No commits between ${baseRef} and ${headSide.ref}`);
      }
      const number = c.state.nextNumber(repo.fullName);
      const pull: Pull = {
        repo: repo.fullName,
        number,
        node_id: `PR_${repo.id}_${number}`,
        title: String(c.body.title),
        body: typeof c.body.body === 'string' ? c.body.body : '',
        state: 'open',
        draft: c.body.draft === true,
        merged: false,
        user: appLogin(c),
        labels: [],
        updatedAt: new Date(c.state.now()).toISOString(),
        head: {
          ref: headSide.ref,
          sha: headSha,
          repo: { id: headSide.repo.id, full_name: headSide.repo.fullName, fork: headSide.repo.fork },
        },
        base: { ref: baseRef, sha: baseSha, repo: { id: repo.id, full_name: repo.fullName } },
      };
      c.state.pulls.push(pull);
      await refreshHead(c, pull);
      return { status: 201, body: pullJson(pull, c.state, c.url) };
    },
  ],
  [
    'GET',
    new RegExp(`^/repos/${REPO}/pulls/(\\d+)$`),
    async (c) => {
      const { repo } = repoFor(c, 'pull_requests', 'read');
      const pull = findPull(c, repo);
      await refreshHead(c, pull);
      return { body: pullJson(pull, c.state, c.url) };
    },
  ],
  [
    'PATCH',
    new RegExp(`^/repos/${REPO}/pulls/(\\d+)$`),
    (c) => {
      const { repo } = repoFor(c, 'pull_requests', 'write');
      const pull = findPull(c, repo);
      if (typeof c.body.body === 'string') pull.body = c.body.body;
      if (typeof c.body.title === 'string') pull.title = c.body.title;
      if (c.body.state === 'open' || c.body.state === 'closed') pull.state = c.body.state;
      if (typeof c.body.base === 'string') pull.base.ref = c.body.base;
      // GitHub un-drafts only through GraphQL; the emulator also takes `draft: false` here.
      if (c.body.draft === false) pull.draft = false;
      return { body: pullJson(pull, c.state, c.url) };
    },
  ],
  [
    'GET',
    new RegExp(`^/repos/${REPO}/pulls/(\\d+)/files$`),
    async (c) => {
      const { repo } = repoFor(c, 'pull_requests', 'read');
      const pull = findPull(c, repo);
      await refreshHead(c, pull);
      const base = await resolveRev(repo.dir, `refs/heads/${pull.base.ref}`);
      const mergeBase =
        base &&
        (await gitText(repo.dir, ['merge-base', base, pull.head.sha], { okExitCodes: [0, 1] })).trim();
      const files = mergeBase ? await diffFiles(repo, mergeBase, pull.head.sha) : [];
      const { page, headers } = paginate(c, `/repos/${repo.fullName}/pulls/${pull.number}/files`, files);
      return { body: page, headers };
    },
  ],
  [
    'GET',
    new RegExp(`^/repos/${REPO}/pulls/(\\d+)/comments$`),
    (c) => {
      const { repo } = repoFor(c, 'pull_requests', 'read');
      const pull = findPull(c, repo);
      const all = c.state.reviewComments
        .filter((m) => m.repo === repo.fullName && m.pullNumber === pull.number)
        .map((m) => reviewCommentJson(m, c.state, c.url));
      const { page, headers } = paginate(c, `/repos/${repo.fullName}/pulls/${pull.number}/comments`, all);
      return { body: page, headers };
    },
  ],
  [
    'GET',
    new RegExp(`^/repos/${REPO}/pulls/comments/(\\d+)$`),
    (c) => {
      const { repo } = repoFor(c, 'pull_requests', 'read');
      const comment = c.state.reviewComments.find(
        (m) => m.repo === repo.fullName && m.id === Number(c.params[2]),
      );
      if (!comment) throw new HttpError(404, 'Not Found');
      return { body: reviewCommentJson(comment, c.state, c.url) };
    },
  ],
  [
    'POST',
    new RegExp(`^/repos/${REPO}/pulls/(\\d+)/requested_reviewers$`),
    (c) => {
      const { repo } = repoFor(c, 'pull_requests', 'write');
      const pull = findPull(c, repo);
      const reviewers = Array.isArray(c.body.reviewers) ? c.body.reviewers.map(String) : [];
      const unknown = reviewers.filter((login) => !c.state.users.has(login));
      if (unknown.length) {
        throw new HttpError(
          422,
          'Reviews may only be requested from collaborators. One or more of the users or teams you specified is not a collaborator of the repository.',
        );
      }
      c.state.reviewRequests.push({ repo: repo.fullName, number: pull.number, reviewers });
      return { status: 201, body: pullJson(pull, c.state, c.url) };
    },
  ],
  [
    'POST',
    /^\/graphql$/,
    (c) => {
      const token = c.token();
      if (!token) throw new HttpError(401, 'This endpoint requires you to be authenticated.');
      const query = String(c.body.query ?? '');
      if (!query.includes('markPullRequestReadyForReview')) {
        throw new HttpError(400, 'The emulator supports only the markPullRequestReadyForReview mutation.');
      }
      const variables = (c.body.variables ?? {}) as { id?: string; pullRequestId?: string };
      const id = variables.id ?? variables.pullRequestId ?? /pullRequestId:\s*"([^"]+)"/.exec(query)?.[1];
      const pull = c.state.pulls.find((p) => p.node_id === id);
      if (!pull || !token.repositories.includes(pull.repo)) {
        return {
          body: {
            data: null,
            errors: [
              {
                type: 'NOT_FOUND',
                path: ['markPullRequestReadyForReview'],
                message: `Could not resolve to a node with the global id of '${id}'`,
              },
            ],
          },
        };
      }
      if (token.permissions.pull_requests !== 'write') {
        return {
          body: {
            data: null,
            errors: [
              {
                type: 'FORBIDDEN',
                path: ['markPullRequestReadyForReview'],
                message: 'Resource not accessible by integration',
              },
            ],
          },
        };
      }
      pull.draft = false;
      return {
        body: {
          data: { markPullRequestReadyForReview: { pullRequest: { id: pull.node_id, isDraft: false } } },
        },
      };
    },
  ],
];
