import { z } from 'zod';

/** A person's role on a repository, from least to most: who may start work is decided on it. */
export type RepoPermission = 'admin' | 'maintain' | 'write' | 'triage' | 'read' | 'none';

/** Whether a permission is write access or more: what starting work, or adding to its text, takes. */
export function hasWriteAccess(permission: RepoPermission): boolean {
  return permission === 'admin' || permission === 'maintain' || permission === 'write';
}

/** GitHub's answer to `GET /repos/{owner}/{repo}/collaborators/{username}/permission`, as relied on. */
const CollaboratorPermission = z.object({
  permission: z.string(),
  role_name: z.string().nullish(),
});

/** The legacy level GitHub reports in `permission` for each built-in role in `role_name`. */
const ROLE_BASE: Record<string, 'admin' | 'write' | 'read'> = {
  admin: 'admin',
  maintain: 'write',
  write: 'write',
  triage: 'read',
  read: 'read',
};

/**
 * Reads a collaborator-permission answer, treating anything it does not recognise as no access:
 * an unparsable body, a `permission` other than admin, write or read, or a built-in `role_name`
 * that disagrees with `permission`. A custom role (a `role_name` GitHub does not define) counts as
 * the base level GitHub reports for it in `permission`. `problem` says why an answer was refused.
 */
export function collaboratorPermission(data: unknown): { level: RepoPermission; problem?: string } {
  const parsed = CollaboratorPermission.safeParse(data);
  if (!parsed.success)
    return { level: 'none', problem: `unexpected answer: ${parsed.error.issues[0]?.message}` };
  const { permission, role_name: role } = parsed.data;
  if (permission === 'none')
    return role && role !== 'none'
      ? { level: 'none', problem: `role ${JSON.stringify(role)} disagrees with permission none` }
      : { level: 'none' };
  if (permission !== 'admin' && permission !== 'write' && permission !== 'read')
    return { level: 'none', problem: `unknown permission ${JSON.stringify(permission)}` };
  if (!role) return { level: permission };
  const base = ROLE_BASE[role];
  if (base === undefined) return { level: permission };
  if (base !== permission)
    return { level: 'none', problem: `role ${JSON.stringify(role)} disagrees with permission ${permission}` };
  return { level: role as RepoPermission };
}
