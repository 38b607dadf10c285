import { HttpError } from './emulator-auth.ts';
import type { CommitComment, Repo } from './emulator-state.ts';
import { gitBytes, gitText, resolveRev } from './git-cli.ts';
import type { Schema } from './github-shapes.ts';
import { repoJson, userJson } from './json-shapes.ts';
import { appLogin, REPO, type Route, type RouteContext, repoFor } from './route-kit.ts';

/** Repositories: metadata, contents (read from the real git repository), branches, commits, compare. */
export const repoRoutes: Route[] = [
  [
    'GET',
    new RegExp(`^/repos/${REPO}$`),
    (c) => {
      const { repo, token } = repoFor(c, 'metadata', 'read');
      const push = token.permissions.contents === 'write';
      return {
        body: {
          ...repoJson(repo, c.url, c.state),
          permissions: { admin: false, maintain: false, push, triage: push, pull: true },
        } satisfies Schema<'full-repository'>,
      };
    },
  ],
  [
    'GET',
    new RegExp(`^/repos/${REPO}/contents/(.*)$`),
    async (c) => {
      const { repo } = repoFor(c, 'contents', 'read');
      const ref = c.query.get('ref') || repo.defaultBranch;
      const file = decodeURIComponent(c.params[2]!).replace(/^\/+|\/+$/g, '');
      const spec = `${ref}:${file}`;
      const type = (await gitBytes(repo.dir, ['cat-file', '-t', spec]))?.toString().trim();
      if (type === 'tree') {
        const listing = await gitText(repo.dir, ['ls-tree', '-l', spec]);
        return {
          body: listing
            .split('\n')
            .filter(Boolean)
            .map((line) => {
              const [meta = '', name = ''] = line.split('\t');
              const [, kind, sha, size] = meta.split(/\s+/);
              const p = file ? `${file}/${name}` : name;
              return { type: kind === 'tree' ? 'dir' : 'file', name, path: p, sha, size: Number(size) || 0 };
            }) satisfies Schema<'content-directory'>,
        };
      }
      if (type !== 'blob') throw new HttpError(404, 'Not Found');
      const content = (await gitBytes(repo.dir, ['cat-file', 'blob', spec]))!;
      const sha = (await gitText(repo.dir, ['rev-parse', spec])).trim();
      return {
        body: {
          type: 'file',
          name: file.split('/').pop(),
          path: file,
          sha,
          size: content.length,
          encoding: 'base64',
          content: content.toString('base64').replace(/(.{60})/g, '$1\n'),
          html_url: `${c.url}/${repo.fullName}/blob/${ref}/${file}`,
        } satisfies Schema<'content-file'>,
      };
    },
  ],
  [
    'GET',
    new RegExp(`^/repos/${REPO}/collaborators/([^/]+)/permission$`),
    (c) => {
      const { repo } = repoFor(c, 'metadata', 'read');
      const login = decodeURIComponent(c.params[2]!);
      const user = c.state.users.get(login);
      if (!user) throw new HttpError(404, 'Not Found');
      const role = c.state.permissions.get(`${repo.fullName}:${login}`) ?? (repo.private ? 'none' : 'read');
      // The legacy `permission` field folds maintain into write and triage into read.
      const permission = role === 'maintain' ? 'write' : role === 'triage' ? 'read' : role;
      return {
        body: {
          permission,
          role_name: role,
          user: userJson(user),
        } satisfies Schema<'repository-collaborator-permission'>,
      };
    },
  ],
  [
    'GET',
    new RegExp(`^/repos/${REPO}/branches/(.+)$`),
    async (c) => {
      const { repo } = repoFor(c, 'contents', 'read');
      const name = decodeURIComponent(c.params[2]!);
      const sha = await resolveRev(repo.dir, `refs/heads/${name}`);
      if (!sha) throw new HttpError(404, 'Branch not found');
      return {
        body: {
          name,
          commit: await commitJson(c, repo, sha),
          protected: false,
        } satisfies Schema<'branch-with-protection'>,
      };
    },
  ],
  [
    'GET',
    new RegExp(`^/repos/${REPO}/compare/(.+)\\.\\.\\.(.+)$`),
    async (c) => {
      const { repo } = repoFor(c, 'contents', 'read');
      return {
        body: await compareJson(c, repo, decodeURIComponent(c.params[2]!), decodeURIComponent(c.params[3]!)),
      };
    },
  ],
];

/** Routes matched after the check-run routes, so `commits/{ref}/check-runs` wins. */
export const commitRoutes: Route[] = [
  [
    'POST',
    new RegExp(`^/repos/${REPO}/commits/([0-9a-f]{40})/comments$`),
    async (c) => {
      const { repo } = repoFor(c, 'contents', 'write');
      const sha = await resolveRev(repo.dir, c.params[2]!);
      if (!sha) throw new HttpError(422, `No commit found for SHA: ${c.params[2]}`);
      if (typeof c.body.body !== 'string')
        throw new HttpError(422, 'Invalid request.\n\n"body" wasn\'t supplied.');
      const comment: CommitComment = {
        id: c.state.nextId(),
        repo: repo.fullName,
        commitSha: sha,
        body: c.body.body,
        user: appLogin(c),
        createdAt: new Date(c.state.now()).toISOString(),
      };
      c.state.commitComments.push(comment);
      return {
        status: 201,
        body: {
          id: comment.id,
          node_id: `CC_${comment.id}`,
          body: comment.body,
          commit_id: sha,
          user: userJson(c.state.user(comment.user)),
          html_url: `${c.url}/${repo.fullName}/commit/${sha}#commitcomment-${comment.id}`,
          url: `${c.apiUrl}/repos/${repo.fullName}/comments/${comment.id}`,
          created_at: comment.createdAt,
          updated_at: comment.createdAt,
        } satisfies Schema<'commit-comment'>,
      };
    },
  ],
  [
    'GET',
    new RegExp(`^/repos/${REPO}/commits/(.+)$`),
    async (c) => {
      const { repo } = repoFor(c, 'contents', 'read');
      const sha = await resolveRev(repo.dir, decodeURIComponent(c.params[2]!));
      if (!sha) throw new HttpError(422, `No commit found for SHA: ${c.params[2]}`);
      const parent = await resolveRev(repo.dir, `${sha}^`);
      return {
        body: {
          ...(await commitJson(c, repo, sha)),
          files: parent ? await diffFiles(repo, parent, sha) : [],
        } satisfies Schema<'commit'>,
      };
    },
  ],
];

async function commitJson(c: RouteContext, repo: Repo, sha: string): Promise<Schema<'commit'>> {
  const out = await gitText(repo.dir, [
    'log',
    '-1',
    '--format=%H%x00%P%x00%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%B',
    sha,
  ]);
  const [, parents = '', an, ae, ad, cn, ce, cd, message = ''] = out.split('\0');
  return {
    sha,
    node_id: `C_${sha}`,
    html_url: `${c.url}/${repo.fullName}/commit/${sha}`,
    commit: {
      message: message.replace(/\n+$/, ''),
      author: { name: an, email: ae, date: ad },
      committer: { name: cn, email: ce, date: cd },
    },
    parents: parents
      .split(' ')
      .filter(Boolean)
      .map((p) => ({ sha: p })),
  };
}

/** Files changed between two commits, with GitHub's status names and line counts. */
export async function diffFiles(repo: Repo, base: string, head: string): Promise<Schema<'diff-entry'>[]> {
  const names = await gitText(repo.dir, ['diff', '--name-status', '--no-renames', base, head]);
  const stats = await gitText(repo.dir, ['diff', '--numstat', '--no-renames', base, head]);
  const counts = new Map(
    stats
      .split('\n')
      .filter(Boolean)
      .map((line) => {
        const [add = '0', del = '0', file = ''] = line.split('\t');
        return [file, { additions: Number(add) || 0, deletions: Number(del) || 0 }] as const;
      }),
  );
  const statusOf: Record<string, NonNullable<Schema<'diff-entry'>['status']>> = {
    A: 'added',
    D: 'removed',
    M: 'modified',
    T: 'changed',
  };
  return names
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [code = 'M', filename = ''] = line.split('\t');
      const n = counts.get(filename) ?? { additions: 0, deletions: 0 };
      return { filename, status: statusOf[code[0]!] ?? 'modified', ...n, changes: n.additions + n.deletions };
    });
}

async function compareJson(
  c: RouteContext,
  repo: Repo,
  baseRef: string,
  headRef: string,
): Promise<Schema<'commit-comparison'>> {
  const base = await resolveRev(repo.dir, baseRef);
  const head = await resolveRev(repo.dir, headRef);
  if (!base || !head) throw new HttpError(404, 'Not Found');
  const mergeBase = (await gitText(repo.dir, ['merge-base', base, head], { okExitCodes: [0, 1] })).trim();
  if (!mergeBase) throw new HttpError(404, `No common ancestor between ${baseRef} and ${headRef}.`);
  const counts = (
    await gitText(repo.dir, ['rev-list', '--left-right', '--count', `${base}...${head}`])
  ).trim();
  const [behind = 0, ahead = 0] = counts.split(/\s+/).map(Number);
  const shas = (await gitText(repo.dir, ['rev-list', '--reverse', `${base}..${head}`]))
    .split('\n')
    .filter(Boolean);
  const status = ahead && behind ? 'diverged' : ahead ? 'ahead' : behind ? 'behind' : 'identical';
  return {
    status,
    ahead_by: ahead,
    behind_by: behind,
    total_commits: ahead,
    merge_base_commit: { sha: mergeBase },
    commits: await Promise.all(shas.slice(0, 250).map((sha) => commitJson(c, repo, sha))),
    files: await diffFiles(repo, mergeBase, head),
    html_url: `${c.url}/${repo.fullName}/compare/${baseRef}...${headRef}`,
  };
}
