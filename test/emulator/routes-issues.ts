import { HttpError } from './emulator-auth.ts';
import type { Comment, Reaction } from './emulator-state.ts';
import type { Schema } from './github-shapes.ts';
import { commentJson, issueJson } from './json-shapes.ts';
import {
  appLogin,
  findIssueLike,
  paginate,
  REPO,
  type Route,
  type RouteContext,
  repoFor,
} from './route-kit.ts';

const REACTIONS = [
  '+1',
  '-1',
  'laugh',
  'confused',
  'heart',
  'hooray',
  'rocket',
  'eyes',
] as const satisfies readonly Schema<'reaction'>['content'][];
type ReactionContent = (typeof REACTIONS)[number];
const isReaction = (value: string): value is ReactionContent =>
  (REACTIONS as readonly string[]).includes(value);

function findComment(c: RouteContext, repo: string): Comment {
  const comment = c.state.comments.find((m) => m.id === Number(c.params[2]) && m.repo === repo);
  if (!comment) throw new HttpError(404, 'Not Found');
  return comment;
}

function labelsOf(labels: string[]): Schema<'label'>[] {
  return labels.map((name) => ({ name, color: 'ededed', default: false }));
}

/** Issues (and the issue side of pull requests): read, update, comments, labels, reactions. */
export const issueRoutes: Route[] = [
  [
    'GET',
    new RegExp(`^/repos/${REPO}/issues/(\\d+)$`),
    (c) => {
      const { repo } = repoFor(c, 'issues', 'read');
      const { issue, pull } = findIssueLike(c, repo);
      return { body: issueJson((issue ?? pull)!, c.state, c.url, c.apiUrl) };
    },
  ],
  [
    'PATCH',
    new RegExp(`^/repos/${REPO}/issues/(\\d+)$`),
    (c) => {
      const { repo } = repoFor(c, 'issues', 'write');
      const { issue, pull } = findIssueLike(c, repo);
      const target = (issue ?? pull)!;
      if (typeof c.body.title === 'string') target.title = c.body.title;
      if (typeof c.body.body === 'string') target.body = c.body.body;
      target.updatedAt = new Date(c.state.now()).toISOString();
      if (c.body.state === 'open' || c.body.state === 'closed') target.state = c.body.state;
      if (Array.isArray(c.body.labels)) target.labels = c.body.labels.map(String);
      return { body: issueJson(target, c.state, c.url, c.apiUrl) };
    },
  ],
  [
    'GET',
    new RegExp(`^/repos/${REPO}/issues/(\\d+)/comments$`),
    (c) => {
      const { repo } = repoFor(c, 'issues', 'read');
      findIssueLike(c, repo);
      const n = Number(c.params[2]);
      const all = c.state.comments
        .filter((m) => m.repo === repo.fullName && m.issueNumber === n)
        .map((m) => commentJson(m, c.state, c.url));
      const { page, headers } = paginate(c, `/repos/${repo.fullName}/issues/${n}/comments`, all);
      return { body: page, headers };
    },
  ],
  [
    'POST',
    new RegExp(`^/repos/${REPO}/issues/(\\d+)/comments$`),
    (c) => {
      const { repo } = repoFor(c, 'issues', 'write');
      findIssueLike(c, repo);
      if (typeof c.body.body !== 'string')
        throw new HttpError(422, 'Invalid request.\n\n"body" wasn\'t supplied.');
      const now = new Date(c.state.now()).toISOString();
      const comment: Comment = {
        id: c.state.nextId(),
        repo: repo.fullName,
        issueNumber: Number(c.params[2]),
        body: c.body.body,
        user: appLogin(c),
        createdAt: now,
        updatedAt: now,
      };
      c.state.comments.push(comment);
      return { status: 201, body: commentJson(comment, c.state, c.url) };
    },
  ],
  [
    'GET',
    new RegExp(`^/repos/${REPO}/issues/comments/(\\d+)$`),
    (c) => {
      const { repo } = repoFor(c, 'issues', 'read');
      return { body: commentJson(findComment(c, repo.fullName), c.state, c.url) };
    },
  ],
  [
    'PATCH',
    new RegExp(`^/repos/${REPO}/issues/comments/(\\d+)$`),
    (c) => {
      const { repo } = repoFor(c, 'issues', 'write');
      const comment = findComment(c, repo.fullName);
      if (typeof c.body.body !== 'string')
        throw new HttpError(422, 'Invalid request.\n\n"body" wasn\'t supplied.');
      comment.body = c.body.body;
      comment.updatedAt = new Date(c.state.now()).toISOString();
      return { body: commentJson(comment, c.state, c.url) };
    },
  ],
  [
    'POST',
    new RegExp(`^/repos/${REPO}/issues/(\\d+)/labels$`),
    (c) => {
      const { repo } = repoFor(c, 'issues', 'write');
      const { issue, pull } = findIssueLike(c, repo);
      const target = (issue ?? pull)!;
      const asked = Array.isArray(c.body.labels) ? c.body.labels : [];
      for (const label of asked.map((l) =>
        typeof l === 'string' ? l : String((l as { name?: unknown }).name),
      )) {
        if (!target.labels.includes(label)) target.labels.push(label);
      }
      return { body: labelsOf(target.labels) };
    },
  ],
  [
    'DELETE',
    new RegExp(`^/repos/${REPO}/issues/(\\d+)/labels/([^/]+)$`),
    (c) => {
      const { repo } = repoFor(c, 'issues', 'write');
      const { issue, pull } = findIssueLike(c, repo);
      const target = (issue ?? pull)!;
      const name = decodeURIComponent(c.params[3]!);
      if (!target.labels.includes(name)) throw new HttpError(404, 'Label does not exist');
      target.labels = target.labels.filter((l) => l !== name);
      return { body: labelsOf(target.labels) };
    },
  ],
  [
    'POST',
    new RegExp(`^/repos/${REPO}/(issues|issues/comments|pulls/comments)/(\\d+)/reactions$`),
    (c) => {
      const kind = c.params[2]!;
      const { repo } = repoFor(c, kind === 'pulls/comments' ? 'pull_requests' : 'issues', 'write');
      const id = Number(c.params[3]);
      const exists =
        kind === 'issues'
          ? c.state.issues.some((i) => i.repo === repo.fullName && i.number === id) ||
            c.state.pulls.some((p) => p.repo === repo.fullName && p.number === id)
          : kind === 'issues/comments'
            ? c.state.comments.some((m) => m.repo === repo.fullName && m.id === id)
            : c.state.reviewComments.some((m) => m.repo === repo.fullName && m.id === id);
      if (!exists) throw new HttpError(404, 'Not Found');
      const content = String(c.body.content);
      if (!isReaction(content)) throw new HttpError(422, 'Validation Failed');
      const subject = `${kind}/${id}`;
      const user = appLogin(c);
      // Reacting twice with the same content returns the existing reaction with 200.
      const existing = c.state.reactions.find(
        (r) => r.repo === repo.fullName && r.subject === subject && r.content === content && r.user === user,
      );
      if (existing) return { status: 200, body: reactionJson(existing, c) };
      const reaction: Reaction = { id: c.state.nextId(), repo: repo.fullName, subject, content, user };
      c.state.reactions.push(reaction);
      return { status: 201, body: reactionJson(reaction, c) };
    },
  ],
];

function reactionJson(reaction: Reaction, c: RouteContext): Schema<'reaction'> {
  const user = c.state.user(reaction.user);
  return {
    id: reaction.id,
    node_id: `REA_${reaction.id}`,
    content: reaction.content,
    user: { login: user.login, id: user.id, type: user.type },
    created_at: new Date(c.state.now()).toISOString(),
  };
}
