import { execFileSync } from 'node:child_process';
import { createReadStream, existsSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DebianSource } from '../../src/proxy/debian-sources.ts';

/** The local Debian repository .ci/debian-fixture.sh built (tests never build it themselves). */
export function debianFixtureDir(): string {
  const script = fileURLToPath(new URL('../../.ci/debian-fixture.sh', import.meta.url));
  const dir = execFileSync('bash', [script, '--print-dir'], { encoding: 'utf8' }).trim();
  if (!existsSync(path.join(dir, 'dists', 'bookworm', 'Release')))
    throw new Error(
      `no Debian fixture repository at ${dir}: run \`bash .ci/setup.sh --for test\` to build it`,
    );
  return dir;
}

/** A loopback HTTP server for the fixture repository (what an operator's archive would serve). */
export interface DebianFixtureServer {
  url: string;
  /** The archive as an operator's sources would name it: unsigned, so `trusted=yes`. */
  archive: DebianSource;
  /** Writes an apt sources file naming it (for AIRLOCK_DEBIAN_SOURCES); returns its path. */
  writeSources(file: string): Promise<string>;
  /** Paths requested, in order. */
  requests: string[];
  close(): Promise<void>;
}

/** Serves the fixture repository's files read-only over HTTP on 127.0.0.1. */
export async function serveDebianFixture(): Promise<DebianFixtureServer> {
  const root = debianFixtureDir();
  const requests: string[] = [];
  const server = createServer((req, res) => {
    const pathname = decodeURIComponent(new URL(req.url ?? '/', 'http://fixture.invalid').pathname);
    requests.push(pathname);
    const file = path.join(root, pathname);
    if ((req.method !== 'GET' && req.method !== 'HEAD') || !file.startsWith(`${root}/`)) {
      res.writeHead(405).end();
      return;
    }
    let size: number;
    try {
      const stat = statSync(file);
      if (!stat.isFile()) throw new Error('not a file');
      size = stat.size;
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
    if (req.method === 'HEAD') res.end();
    else createReadStream(file).pipe(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  return {
    url,
    archive: { uri: url, suites: ['bookworm'], components: ['main'], trusted: true },
    async writeSources(file) {
      await writeFile(file, `deb [trusted=yes] ${url} bookworm main\n`);
      return file;
    },
    requests,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
