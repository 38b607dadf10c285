import { createAppAuth } from '@octokit/auth-app';
import { Octokit } from '@octokit/rest';
import { z } from 'zod';
import type { AuditSink } from '../audit-sink.ts';
import { errorMessage, GitHubError } from '../errors.ts';
import type { SecretRedactor } from '../secrets.ts';
import { TaskFailure } from '../tasks/task-runner.ts';

/** What minting and revoking task tokens needs: the app's key, where GitHub is, the redactor. */
export interface TaskTokenDeps {
  appId: number;
  privateKey: string;
  /** GitHub's REST base URL (`https://api.github.com`, GHES `/api/v3`, or the emulator's). */
  baseUrl: string;
  /** Every minted value is registered here, so no log line or audit event can carry it. */
  redactor: SecretRedactor;
  fetch?: typeof fetch;
}

/** A minted installation token and its scope. `token` is a secret: keep it in memory only. */
export interface TaskToken {
  token: string;
  expiresAt: string;
  permissions: Record<string, string>;
  repositories: string[];
}

/** The least a task needs: read and push code, nothing else. */
export const TASK_TOKEN_PERMISSIONS = { contents: 'write' } as const;

function request(deps: Pick<TaskTokenDeps, 'baseUrl' | 'fetch'>) {
  return new Octokit({ baseUrl: deps.baseUrl, request: deps.fetch ? { fetch: deps.fetch } : {} }).request;
}

/** GitHub's answer to a token mint, as far as airlock relies on it (`installation-token` in its API). */
const MintedToken = z.object({
  token: z.string().min(1),
  expires_at: z.iso.datetime({ offset: true }),
  permissions: z.record(z.string(), z.string()).optional(),
  repository_selection: z.enum(['all', 'selected']).optional(),
  repositories: z.array(z.object({ full_name: z.string() })).optional(),
});
type MintedToken = z.infer<typeof MintedToken>;

/** The only permission GitHub adds to every installation token, and the only one allowed beside ours. */
const IMPLIED_PERMISSIONS: Record<string, string> = { metadata: 'read' };

/** The only permission a read-only token for other repositories holds. */
export const READ_TOKEN_PERMISSIONS = { contents: 'read' } as const;

/**
 * Why a minted token is not scoped to exactly `repositories` with `contents: <level>` (plus the
 * `metadata: read` GitHub always adds), or undefined when it is. What GitHub did not state counts
 * as broader, never as what was asked for.
 */
function tokenScopeProblem(
  minted: MintedToken,
  repositories: readonly string[],
  contents: 'read' | 'write',
): string | undefined {
  const asked = repositories.join(', ');
  if (minted.repository_selection === 'all') return 'it covers every repository of the installation';
  if (minted.repositories === undefined) return "GitHub's answer does not list the token's repositories";
  const names = minted.repositories.map((r) => r.full_name.toLowerCase()).sort();
  const wantedNames = repositories.map((r) => r.toLowerCase()).sort();
  if (names.join() !== wantedNames.join())
    return `it covers ${names.length ? minted.repositories.map((r) => r.full_name).join(', ') : 'no repository'} instead of ${asked} alone`;
  if (minted.permissions === undefined) return "GitHub's answer does not state the token's permissions";
  const wanted: Record<string, string> = { ...IMPLIED_PERMISSIONS, contents };
  if (minted.permissions.contents !== contents)
    return `its contents permission is ${minted.permissions.contents ?? 'missing'}, not ${contents}`;
  const extra = Object.entries(minted.permissions).filter(([name, level]) => wanted[name] !== level);
  if (extra.length) return `it also grants ${extra.map(([name, level]) => `${name}: ${level}`).join(', ')}`;
  return undefined;
}

/**
 * Mints an installation token limited to one repository with `contents: write`, registers its
 * value with the redactor, and checks that GitHub's answer states exactly that scope (else revokes
 * it and fails). Each call posts its own mint: @octokit/auth-app shares one request among
 * concurrent callers for the same installation and repository, even with `refresh: true`, which
 * would give two tasks one token that the first to end revokes for both.
 */
export function mintTaskToken(
  deps: TaskTokenDeps,
  params: { installationId: number; repository: { owner: string; name: string } },
): Promise<TaskToken> {
  return mintRepositoryToken(deps, {
    installationId: params.installationId,
    owner: params.repository.owner,
    names: [params.repository.name],
    contents: TASK_TOKEN_PERMISSIONS.contents,
  });
}

/**
 * Mints an installation token for `names` (repositories of `owner`, the installation's account)
 * with `contents: read` or `write` and nothing else, checked as {@link mintTaskToken} checks.
 */
export async function mintRepositoryToken(
  deps: TaskTokenDeps,
  params: { installationId: number; owner: string; names: readonly string[]; contents: 'read' | 'write' },
): Promise<TaskToken> {
  const fullNames = params.names.map((name) => `${params.owner}/${name}`);
  const fullName = fullNames.join(', ');
  const permissions = { contents: params.contents };
  let answer: unknown;
  try {
    // An app JWT is signed locally; nothing about it is shared between callers.
    const { token: jwt } = await createAppAuth({ appId: deps.appId, privateKey: deps.privateKey })({
      type: 'app',
    });
    const response = await request(deps)('POST /app/installations/{installation_id}/access_tokens', {
      installation_id: params.installationId,
      repositories: [...params.names],
      permissions,
      headers: { authorization: `bearer ${jwt}` },
    });
    answer = response.data;
  } catch (cause) {
    const status = (cause as { status?: number }).status;
    throw new GitHubError(`could not mint a token for ${fullName} (installation ${params.installationId})`, {
      cause,
      status,
      hint: `check that the app is installed on ${fullNames.length > 1 ? 'each repository' : 'the repository'} and was granted Contents: ${params.contents === 'write' ? 'read and write' : 'read'}`,
    });
  }
  // Whatever the answer's shape, a value GitHub handed out must never reach a log, and is revoked
  // unless it is exactly what the task may hold.
  const value = (answer as { token?: unknown } | null)?.token;
  const token = typeof value === 'string' && value !== '' ? value : undefined;
  if (token !== undefined) deps.redactor.add(token);
  const parsed = MintedToken.safeParse(answer);
  const problem = parsed.success
    ? tokenScopeProblem(parsed.data, fullNames, params.contents)
    : `the answer is not an installation token (${parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; ')})`;
  if (problem !== undefined || !parsed.success) {
    const revoked =
      token === undefined
        ? 'there was no token to revoke'
        : await revokeTaskToken(deps, token).then(
            () => 'the token was revoked',
            (error: unknown) => `revoking the token failed too (${errorMessage(error)})`,
          );
    throw new TaskFailure(
      'github_failed',
      `GitHub's answer to the token mint for ${fullName} does not show the one scope a task may hold: ${problem}; ${revoked}. A task's token must cover ${fullName} alone with contents: ${params.contents} (and the metadata: read GitHub adds); check the app's installation and GITHUB_API_URL`,
    );
  }
  const minted = parsed.data;
  return {
    token: minted.token,
    expiresAt: minted.expires_at,
    permissions: minted.permissions!,
    repositories: minted.repositories!.map((r) => r.full_name),
  };
}

/** Revokes an installation token (`DELETE /installation/token`); a token already dead counts as revoked. */
export async function revokeTaskToken(
  deps: Pick<TaskTokenDeps, 'baseUrl' | 'fetch'>,
  token: string,
): Promise<void> {
  try {
    await request(deps)('DELETE /installation/token', { headers: { authorization: `token ${token}` } });
  } catch (cause) {
    const status = (cause as { status?: number }).status;
    if (status === 401) return;
    throw new GitHubError('could not revoke a task token', {
      cause,
      status,
      hint: 'it expires on its own within an hour',
    });
  }
}

/** A task's GitHub credential as the proxy uses it: a current token, renewed before it expires. */
export interface TaskCredential {
  /** The current token value, minting or renewing it when needed. */
  token(): Promise<string>;
  /** Revokes every token this credential minted; idempotent. */
  revoke(): Promise<void>;
}

/** Renew a token this long before GitHub says it expires. */
export const TOKEN_RENEW_MARGIN_MS = 10 * 60_000;

/**
 * A {@link TaskCredential} for one task: mints on first use, renews near expiry (revoking the old
 * token), audits scope and expiry of each token (never its value), and revokes on `revoke()`.
 */
export function taskCredential(
  deps: TaskTokenDeps & { audit: AuditSink; now?: () => number },
  params: {
    taskId: string;
    installationId: number;
    repository: { owner: string; name: string };
    /** Instead of the task's own token: a read-only one for these other repositories (names, without the owner). */
    readOnly?: readonly string[];
  },
): TaskCredential {
  const now = deps.now ?? Date.now;
  let current: Promise<TaskToken> | undefined;
  let renewing: Promise<TaskToken> | undefined;
  let revoked = false;
  const live = new Set<string>();

  const mint = async (): Promise<TaskToken> => {
    const minted = params.readOnly
      ? await mintRepositoryToken(deps, {
          installationId: params.installationId,
          owner: params.repository.owner,
          names: params.readOnly,
          contents: READ_TOKEN_PERMISSIONS.contents,
        })
      : await mintTaskToken(deps, params);
    live.add(minted.token);
    deps.audit.append(params.taskId, 'token.minted', {
      repository: minted.repositories,
      permissions: minted.permissions,
      expires_at: minted.expiresAt,
    });
    return minted;
  };

  const retire = async (token: string) => {
    await revokeTaskToken(deps, token);
    live.delete(token);
    deps.audit.append(params.taskId, 'token.revoked', {
      repository: params.readOnly
        ? params.readOnly.map((name) => `${params.repository.owner}/${name}`)
        : `${params.repository.owner}/${params.repository.name}`,
    });
  };

  const renew = async (stale: TaskToken): Promise<TaskToken> => {
    const fresh = await mint();
    await retire(stale.token);
    return fresh;
  };

  return {
    async token() {
      if (revoked) throw new GitHubError('the task has ended; its token was revoked');
      current ??= mint().catch((error: unknown) => {
        current = undefined; // a failed mint is retried by the next caller
        throw error;
      });
      const minted = await current;
      if (Date.parse(minted.expiresAt) - now() >= TOKEN_RENEW_MARGIN_MS) return minted.token;
      // One renewal at a time: concurrent callers share it.
      if (renewing === undefined) {
        renewing = renew(minted);
        current = renewing;
        renewing
          .finally(() => {
            renewing = undefined;
          })
          .catch(() => undefined);
      }
      return (await renewing).token;
    },
    async revoke() {
      revoked = true;
      await current?.catch(() => undefined);
      const errors: unknown[] = [];
      for (const token of [...live]) await retire(token).catch((e: unknown) => errors.push(e));
      if (errors.length) throw errors[0];
    },
  };
}
