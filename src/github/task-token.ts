import { createAppAuth } from '@octokit/auth-app';
import { Octokit } from '@octokit/rest';
import type { AuditSink } from '../audit-sink.ts';
import { GitHubError } from '../errors.ts';
import type { SecretRedactor } from '../secrets.ts';

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

/**
 * Mints an installation token limited to one repository with `contents: write`, bypassing any
 * cache so each task gets its own token, and registers its value with the redactor.
 */
export async function mintTaskToken(
  deps: TaskTokenDeps,
  params: { installationId: number; repository: { owner: string; name: string } },
): Promise<TaskToken> {
  const auth = createAppAuth({ appId: deps.appId, privateKey: deps.privateKey, request: request(deps) });
  let minted: Awaited<ReturnType<typeof auth>> & { token: string; expiresAt?: string };
  try {
    minted = await auth({
      type: 'installation',
      installationId: params.installationId,
      repositoryNames: [params.repository.name],
      permissions: { ...TASK_TOKEN_PERMISSIONS },
      refresh: true,
    });
  } catch (cause) {
    const status = (cause as { status?: number }).status;
    throw new GitHubError(
      `could not mint a token for ${params.repository.owner}/${params.repository.name} (installation ${params.installationId})`,
      {
        cause,
        status,
        hint: 'check that the app is installed on the repository and was granted Contents: read and write',
      },
    );
  }
  deps.redactor.add(minted.token);
  const data = minted as unknown as { permissions?: Record<string, string>; repositoryNames?: string[] };
  return {
    token: minted.token,
    expiresAt: minted.expiresAt ?? '',
    permissions: data.permissions ?? { ...TASK_TOKEN_PERMISSIONS },
    repositories: (data.repositoryNames ?? [params.repository.name]).map((n) =>
      n.includes('/') ? n : `${params.repository.owner}/${n}`,
    ),
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
  params: { taskId: string; installationId: number; repository: { owner: string; name: string } },
): TaskCredential {
  const now = deps.now ?? Date.now;
  let current: Promise<TaskToken> | undefined;
  let renewing: Promise<TaskToken> | undefined;
  let revoked = false;
  const live = new Set<string>();

  const mint = async (): Promise<TaskToken> => {
    const minted = await mintTaskToken(deps, params);
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
      repository: `${params.repository.owner}/${params.repository.name}`,
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
