import { timingSafeEqual } from 'node:crypto';
import type { Context } from 'hono';
import type { Clock } from '../clock.ts';
import { type AccessScope, ALL_REPOS, type RepoAccess } from './repo-access.ts';
import type { Sealer } from './session-sealer.ts';
import type { TaskQuery } from './task-query.ts';
import { readSession, type Session } from './web-session.ts';

/** Who is asking: the admin token (automation) or a signed-in person. */
export type Viewer = { kind: 'admin' } | { kind: 'person'; session: Session };

/** What resolving a viewer needs. */
export interface ViewerDeps {
  sealer: Sealer | undefined;
  access: RepoAccess | undefined;
  query: TaskQuery;
  clock: Clock;
  adminToken: string | undefined;
  /** Lower-cased logins of the operators, who see every task. */
  operators: ReadonlySet<string>;
}

/** Whether the request carries `Authorization: Bearer <admin token>` (compared in constant time). */
export function hasAdminToken(c: Context, adminToken: string | undefined): boolean {
  if (!adminToken) return false;
  const match = /^Bearer\s+(\S+)$/i.exec(c.req.header('authorization') ?? '');
  if (!match) return false;
  const given = Buffer.from(match[1]!);
  const expected = Buffer.from(adminToken);
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** The signed-in person, if any. */
export function sessionViewer(c: Context, deps: ViewerDeps): Viewer | undefined {
  if (!deps.sealer) return undefined;
  const session = readSession(c, deps.sealer, deps.clock);
  return session ? { kind: 'person', session } : undefined;
}

/**
 * The tasks a viewer may see. The admin token and the operators see every task; a person, every repository GitHub lists as readable for them,
 * across the installations tasks were recorded under (cached briefly by RepoAccess).
 */
export async function viewerScope(viewer: Viewer, deps: ViewerDeps): Promise<AccessScope> {
  if (viewer.kind === 'admin' || deps.operators.has(viewer.session.login.toLowerCase())) return ALL_REPOS;
  if (!deps.access) return { all: false, repoIds: new Set(), repoNames: new Set() };
  return deps.access.scope(
    { userId: viewer.session.userId, token: viewer.session.token },
    await deps.query.installationIds(),
  );
}
