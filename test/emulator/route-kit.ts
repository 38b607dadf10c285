import { HttpError, requireRepoAccess } from './emulator-auth.ts';
import type { EmulatorState, Issue, PermissionLevel, Pull, Repo, Token } from './emulator-state.ts';

/** What a route handler gets. */
export interface RouteContext {
  method: string;
  params: string[];
  query: URLSearchParams;
  body: Record<string, unknown>;
  authorization: string | undefined;
  token: () => Token | undefined;
  state: EmulatorState;
  app: { id: number; slug: string; privateKey: string; clientId?: string; clientSecret?: string };
  /** The emulator's base URL (web and git). */
  url: string;
  /** The REST base URL. */
  apiUrl: string;
}

export type RouteResult = { status?: number; body?: unknown; headers?: Record<string, string> };
export type Route = [
  method: string,
  pattern: RegExp,
  handler: (c: RouteContext) => RouteResult | Promise<RouteResult>,
];

/** `owner/name` in a route pattern: params[0] and params[1]. */
export const REPO = '([^/]+)/([^/]+)';

/** The repository named by params[0..1], checked against the token; 404 when missing. */
export function repoFor(
  c: RouteContext,
  permission: string,
  level: PermissionLevel,
): { repo: Repo; token: Token } {
  const repo = c.state.repos.get(`${c.params[0]}/${c.params[1]}`);
  const token = c.token();
  if (!token) throw new HttpError(401, 'Requires authentication');
  if (!repo) throw new HttpError(404, 'Not Found');
  return { repo, token: requireRepoAccess(token, repo.fullName, permission, level) };
}

/** Whether an installation covers a repository. */
export function covers(inst: { account: string; repositories: string[] | 'all' }, repo: Repo): boolean {
  return inst.repositories === 'all'
    ? repo.owner === inst.account
    : inst.repositories.includes(repo.fullName);
}

/** The issue or pull request numbered params[2]. */
export function findIssueLike(c: RouteContext, repo: Repo): { issue?: Issue; pull?: Pull } {
  const n = Number(c.params[2]);
  const issue = c.state.issues.find((i) => i.repo === repo.fullName && i.number === n);
  if (issue) return { issue };
  const pull = c.state.pulls.find((p) => p.repo === repo.fullName && p.number === n);
  if (pull) return { pull };
  throw new HttpError(404, 'Not Found');
}

/** The pull request numbered params[2]. */
export function findPull(c: RouteContext, repo: Repo): Pull {
  const pull = c.state.pulls.find((p) => p.repo === repo.fullName && p.number === Number(c.params[2]));
  if (!pull) throw new HttpError(404, 'Not Found');
  return pull;
}

/** The login the app acts as. */
export function appLogin(c: RouteContext): string {
  return `${c.app.slug}[bot]`;
}

/** One page of `items` with GitHub's `per_page`/`page` query and `Link` header. */
export function paginate<T>(
  c: RouteContext,
  path: string,
  items: T[],
): { page: T[]; headers: Record<string, string> } {
  const perPage = Math.min(Math.max(Number(c.query.get('per_page') ?? 30) || 30, 1), 100);
  const pageNo = Math.max(Number(c.query.get('page') ?? 1) || 1, 1);
  const last = Math.max(Math.ceil(items.length / perPage), 1);
  const link = (page: number, rel: string) => {
    const q = new URLSearchParams(c.query);
    q.set('per_page', String(perPage));
    q.set('page', String(page));
    return `<${c.apiUrl}${path}?${q}>; rel="${rel}"`;
  };
  const links: string[] = [];
  if (pageNo < last) links.push(link(pageNo + 1, 'next'), link(last, 'last'));
  if (pageNo > 1) links.push(link(1, 'first'), link(pageNo - 1, 'prev'));
  return {
    page: items.slice((pageNo - 1) * perPage, pageNo * perPage),
    headers: links.length ? { link: links.join(', ') } : {},
  };
}

/** Reads a required string field of the body; 422 when it is missing. */
export function requiredString(c: RouteContext, field: string): string {
  const value = c.body[field];
  if (typeof value !== 'string' || value === '') {
    throw new HttpError(422, `Invalid request.\n\n"${field}" wasn't supplied.`);
  }
  return value;
}
