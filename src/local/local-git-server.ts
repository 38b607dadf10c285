import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { serveGit } from '../git/http-backend.ts';
import type { TaskCredential } from '../github/task-token.ts';

/** The owner name local repositories are served under, as `local/<name>`. */
export const LOCAL_OWNER = 'local';

/**
 * Local mode's stand-in for GitHub's git service: serves one local repository over smart HTTP on
 * loopback, to the task's credential proxy only. It takes the same kind of credential GitHub does
 * (a secret in Basic auth, held by the proxy, never by the VM) and stops accepting it when the task
 * ends. The proxy's ref policy decides what may be pushed; this server accepts pushes so that the
 * task's branch can land in the repository.
 */
export interface LocalGitServer {
  /** `local/<name>`: the repository name the task uses. */
  readonly repository: { owner: string; name: string };
  gitUrl(owner: string, name: string): string;
  /** The credential the proxy uses; revoking it locks the server. */
  readonly credential: TaskCredential;
  close(): Promise<void>;
}

/** `gitDir` is the repository's git directory (`git rev-parse --absolute-git-dir`). */
export async function startLocalGitServer(gitDir: string, repoName: string): Promise<LocalGitServer> {
  const name = repoName.replace(/[^A-Za-z0-9._-]/g, '-') || 'repo';
  let secret: Buffer | undefined = randomBytes(24);
  const secretText = secret.toString('hex');
  const expected = () => (secret ? Buffer.from(`x-access-token:${secretText}`) : undefined);

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://local.invalid');
    const match = /^\/([^/]+)\/([^/]+)\.git(\/info\/refs|\/git-upload-pack|\/git-receive-pack)$/.exec(
      url.pathname,
    );
    if (!match || match[1] !== LOCAL_OWNER || match[2] !== name) {
      req.resume();
      res.writeHead(404, { 'content-type': 'text/plain' }).end('Repository not found.\n');
      return;
    }
    const want = expected();
    const given = Buffer.from(
      Buffer.from((req.headers.authorization ?? '').replace(/^Basic /, ''), 'base64').toString(),
    );
    if (!want || given.length !== want.length || !timingSafeEqual(given, want)) {
      req.resume();
      res
        .writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Basic realm="airlock local"' })
        .end('Authentication required\n');
      return;
    }
    void serveGit(req, res, {
      projectRoot: path.dirname(gitDir),
      pathInfo: `/${path.basename(gitDir)}${match[3]}`,
      query: url.search.slice(1),
      remoteUser: 'airlock',
      env: {
        // This request only: accept pushes, and serve a repository owned by another user.
        GIT_CONFIG_COUNT: '2',
        GIT_CONFIG_KEY_0: 'http.receivepack',
        GIT_CONFIG_VALUE_0: 'true',
        GIT_CONFIG_KEY_1: 'safe.directory',
        GIT_CONFIG_VALUE_1: '*',
      },
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    repository: { owner: LOCAL_OWNER, name },
    gitUrl: (owner, repo) => `${base}/${owner}/${repo}.git`,
    credential: {
      token: async () => {
        if (!secret) throw new Error('the local task credential was revoked');
        return secretText;
      },
      revoke: async () => {
        secret?.fill(0);
        secret = undefined;
      },
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
