import { Octokit } from '@octokit/rest';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GitHubError } from '../../src/errors.ts';
import {
  mintTaskToken,
  revokeTaskToken,
  TOKEN_RENEW_MARGIN_MS,
  taskCredential,
} from '../../src/github/task-token.ts';
import { REDACTED, SecretRedactor } from '../../src/secrets.ts';
import { TaskFailure } from '../../src/tasks/task-runner.ts';
import { type GitHubEmulator, startGitHubEmulator } from '../emulator/index.ts';
import { RecordingAudit } from '../helpers/recording-audit.ts';

let gh: GitHubEmulator;
let installationId: number;
let redactor: SecretRedactor;
const repository = { owner: 'acme', name: 'widgets' };

beforeEach(async () => {
  gh = await startGitHubEmulator();
  await gh.createRepo('acme', 'widgets');
  await gh.createRepo('acme', 'other');
  installationId = gh.installApp('acme');
  redactor = new SecretRedactor();
});
afterEach(async () => {
  await gh.close();
});

type MintAnswer = {
  permissions?: Record<string, string>;
  repositories?: Array<{ full_name: string }>;
  [key: string]: unknown;
};

/** A fetch that rewrites GitHub's answer to a token mint, as a GitHub answering otherwise would. */
const rewritingMint =
  (rewrite: (body: MintAnswer) => MintAnswer): typeof fetch =>
  async (input, init) => {
    const response = await fetch(input, init);
    const url = input instanceof Request ? input.url : String(input);
    if (!url.endsWith('/access_tokens')) return response;
    const body = rewrite((await response.json()) as MintAnswer);
    return new Response(JSON.stringify(body), {
      status: response.status,
      headers: { 'content-type': 'application/json; charset=utf-8' },
    });
  };

const deps = () => ({ appId: gh.app.id, privateKey: gh.app.privateKey, baseUrl: gh.apiUrl, redactor });
const works = (token: string, repo = 'widgets') =>
  new Octokit({ baseUrl: gh.apiUrl, auth: token }).rest.repos.get({ owner: 'acme', repo }).then(
    (r) => r.status,
    (e: { status: number }) => e.status,
  );

describe('task tokens', () => {
  it('mints a token for one repository with contents: write only, registered for redaction', async () => {
    const minted = await mintTaskToken(deps(), { installationId, repository });
    expect(minted.repositories).toEqual(['acme/widgets']);
    // GitHub adds metadata: read to every installation token; nothing else may come with it.
    expect(minted.permissions).toEqual({ contents: 'write', metadata: 'read' });
    expect(Date.parse(minted.expiresAt)).toBeGreaterThan(Date.now());
    const stored = gh.state.tokens.find((t) => t.token === minted.token)!;
    expect(stored.repositories).toEqual(['acme/widgets']);
    expect(stored.permissions).toEqual({ contents: 'write', metadata: 'read' });
    expect(redactor.scrub(`x ${minted.token} y`)).toBe(`x ${REDACTED} y`);
    expect(await works(minted.token)).toBe(200);
    expect(await works(minted.token, 'other')).toBe(404);
    await revokeTaskToken(deps(), minted.token);
    expect(await works(minted.token)).toBe(401);
    await revokeTaskToken(deps(), minted.token); // already dead: still fine
  });

  it('gives each of three concurrent mints for one repository its own token', async () => {
    // @octokit/auth-app shares one request among concurrent callers with the same installation and
    // repository, even with refresh: true; then the first task to end revokes every task's token.
    const minted = await Promise.all(
      [1, 2, 3].map(() => mintTaskToken(deps(), { installationId, repository })),
    );
    const values = minted.map((m) => m.token);
    expect(new Set(values).size).toBe(3);
    expect(gh.state.tokens.filter((t) => values.includes(t.token))).toHaveLength(3);
    await revokeTaskToken(deps(), values[0]!);
    expect(await works(values[1]!)).toBe(200);
    expect(await works(values[2]!)).toBe(200);
  });

  it.each([
    {
      answer: 'states neither repositories nor permissions',
      rewrite: ({ repositories: _r, permissions: _p, ...rest }: MintAnswer) => rest,
      problem: /does not list the token's repositories/,
    },
    {
      answer: 'states no permissions',
      rewrite: ({ permissions: _p, ...rest }: MintAnswer) => rest,
      problem: /does not state the token's permissions/,
    },
    {
      answer: 'covers a second repository',
      rewrite: (body: MintAnswer) => ({
        ...body,
        repositories: [...(body.repositories ?? []), { full_name: 'acme/other' }],
      }),
      problem: /covers acme\/widgets, acme\/other instead of acme\/widgets alone/,
    },
    {
      answer: 'covers every repository',
      rewrite: (body: MintAnswer) => ({ ...body, repository_selection: 'all' }),
      problem: /covers every repository of the installation/,
    },
    {
      answer: 'grants more than contents: write',
      rewrite: (body: MintAnswer) => ({ ...body, permissions: { ...body.permissions, issues: 'write' } }),
      problem: /also grants issues: write/,
    },
    {
      answer: 'grants contents: read only',
      rewrite: (body: MintAnswer) => ({ ...body, permissions: { contents: 'read', metadata: 'read' } }),
      problem: /contents permission is read, not write/,
    },
  ])('refuses and revokes a token when GitHub’s answer $answer', async ({ rewrite, problem }) => {
    const error = await mintTaskToken(
      { ...deps(), fetch: rewritingMint(rewrite) },
      { installationId, repository },
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TaskFailure);
    expect((error as TaskFailure).reason).toBe('github_failed');
    expect((error as Error).message).toMatch(problem);
    expect((error as Error).message).toMatch(/the token was revoked/);
    const minted = gh.state.tokens.at(-1)!;
    expect(minted.revoked).toBe(true);
    expect((error as Error).message).not.toContain(minted.token);
    expect(redactor.scrub(minted.token)).toBe(REDACTED);
  });

  it('says how to fix a mint that GitHub refuses', async () => {
    const error = await mintTaskToken(deps(), { installationId: 999_999, repository }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(GitHubError);
    expect((error as Error).message).toMatch(/installed on the repository/);
  });

  it('renews near expiry, audits scope but never the value, and revokes every token it minted', async () => {
    const audit = new RecordingAudit();
    let clock = Date.now();
    const credential = taskCredential(
      { ...deps(), audit, now: () => clock },
      { taskId: 't1', installationId, repository },
    );
    const first = await credential.token();
    expect(await credential.token()).toBe(first);
    clock += 60 * 60_000 - TOKEN_RENEW_MARGIN_MS + 1000;
    const [second, again] = await Promise.all([credential.token(), credential.token()]);
    expect(second).not.toBe(first);
    expect(again).toBe(second);
    expect(await works(first)).toBe(401);
    expect(await works(second)).toBe(200);
    await credential.revoke();
    await credential.revoke();
    expect(await works(second)).toBe(401);
    await expect(credential.token()).rejects.toThrow(/revoked/);
    expect(audit.types('t1')).toEqual(['token.minted', 'token.minted', 'token.revoked', 'token.revoked']);
    expect(audit.events[0]!.data).toMatchObject({
      repository: ['acme/widgets'],
      permissions: { contents: 'write' },
    });
    expect(JSON.stringify(audit.events)).not.toContain(first);
    expect(JSON.stringify(audit.events)).not.toContain(second);
  });
});
