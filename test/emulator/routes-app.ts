import { HttpError, newTokenValue, verifyAppJwt } from './emulator-auth.ts';
import type { Installation, PermissionLevel, Token } from './emulator-state.ts';
import type { Answer, Schema } from './github-shapes.ts';
import { installationJson, repoJson } from './json-shapes.ts';
import { covers, paginate, REPO, type Route, type RouteContext } from './route-kit.ts';

const TOKEN_LIFETIME_MS = 3600_000;

function jwt(c: RouteContext): void {
  verifyAppJwt(c.authorization, c.app.id, c.app.privateKey);
}

function installation(c: RouteContext, id: string | undefined): Installation {
  const inst = c.state.installations.get(Number(id));
  if (!inst) throw new HttpError(404, 'Not Found');
  return inst;
}

/** App authentication: the app itself, its installations, and installation access tokens. */
export const appRoutes: Route[] = [
  [
    'GET',
    /^\/app$/,
    (c) => {
      jwt(c);
      return {
        body: {
          id: c.app.id,
          slug: c.app.slug,
          node_id: `A_${c.app.id}`,
          name: c.app.slug,
          owner: { login: 'emulator', id: 1, type: 'Organization' },
          html_url: `${c.url}/apps/${c.app.slug}`,
          permissions: {},
          events: [],
        } satisfies Schema<'integration'>,
      };
    },
  ],
  [
    'GET',
    /^\/app\/installations$/,
    (c) => {
      jwt(c);
      const all = [...c.state.installations.values()].map((i) =>
        installationJson(i, c.state, c.app.id, c.app.slug),
      );
      const { page, headers } = paginate(c, '/app/installations', all);
      return { body: page, headers };
    },
  ],
  [
    'GET',
    /^\/app\/installations\/(\d+)$/,
    (c) => {
      jwt(c);
      return { body: installationJson(installation(c, c.params[0]), c.state, c.app.id, c.app.slug) };
    },
  ],
  [
    'GET',
    new RegExp(`^/repos/${REPO}/installation$`),
    (c) => {
      jwt(c);
      const repo = c.state.repos.get(`${c.params[0]}/${c.params[1]}`);
      const inst = repo && [...c.state.installations.values()].find((i) => covers(i, repo));
      if (!inst) throw new HttpError(404, 'Not Found');
      return { body: installationJson(inst, c.state, c.app.id, c.app.slug) };
    },
  ],
  ['POST', /^\/app\/installations\/(\d+)\/access_tokens$/, mintToken],
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
    /^\/installation\/repositories$/,
    (c) => {
      const token = c.token();
      if (!token) throw new HttpError(401, 'Requires authentication');
      const repos = token.repositories.flatMap((name) => {
        const repo = c.state.repos.get(name);
        return repo ? [repoJson(repo, c.url, c.state)] : [];
      });
      const { page, headers } = paginate(c, '/installation/repositories', repos);
      return {
        body: { total_count: repos.length, repositories: page } satisfies Answer<
          '/installation/repositories',
          'get'
        >,
        headers,
      };
    },
  ],
];

function mintToken(c: RouteContext) {
  jwt(c);
  const inst = installation(c, c.params[0]);
  const all = [...c.state.repos.values()].filter((r) => covers(inst, r));
  const names = c.body.repositories;
  const ids = c.body.repository_ids;
  if ((names !== undefined && !Array.isArray(names)) || (ids !== undefined && !Array.isArray(ids))) {
    throw new HttpError(422, 'Invalid request.\n\nrepositories and repository_ids must be arrays.');
  }
  const selected = names !== undefined || ids !== undefined;
  let repos = all;
  if (selected) {
    const wanted = [...((names as unknown[]) ?? []), ...((ids as unknown[]) ?? [])];
    repos = all.filter((r) => wanted.includes(r.name) || wanted.includes(r.id));
    const unknown = wanted.filter((w) => !all.some((r) => r.name === w || r.id === w));
    if (unknown.length) {
      throw new HttpError(
        422,
        'There is at least one repository that does not exist or is not accessible to the parent installation.',
      );
    }
  }
  const asked = c.body.permissions as Record<string, unknown> | undefined;
  if (asked !== undefined && (typeof asked !== 'object' || asked === null)) {
    throw new HttpError(422, 'Invalid request.\n\npermissions must be an object.');
  }
  for (const [perm, level] of Object.entries(asked ?? {})) {
    const has = inst.permissions[perm];
    if ((level !== 'read' && level !== 'write') || !has || (level === 'write' && has !== 'write')) {
      throw new HttpError(422, `The permissions requested are not granted to this installation.`);
    }
  }
  const permissions = {
    ...((asked as Record<string, PermissionLevel>) ?? inst.permissions),
    metadata: 'read' as const,
  };
  const token: Token = {
    token: newTokenValue(),
    installationId: inst.id,
    repositories: repos.map((r) => r.fullName),
    permissions,
    expiresAt: c.state.now() + TOKEN_LIFETIME_MS,
    revoked: false,
  };
  c.state.tokens.push(token);
  return {
    status: 201,
    body: {
      token: token.token,
      expires_at: new Date(token.expiresAt).toISOString().replace(/\.\d{3}Z$/, 'Z'),
      permissions,
      repository_selection: selected || inst.repositories !== 'all' ? 'selected' : 'all',
      ...(selected ? { repositories: repos.map((r) => repoJson(r, c.url, c.state)) } : {}),
    } satisfies Schema<'installation-token'>,
  };
}
