import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { runProcess } from '../../src/process/run-process.ts';
import { createEgressCa, issueHostCertificate } from '../../src/proxy/egress-ca.ts';

/** A private npm-style registry on loopback HTTPS that answers only with its credential. */
export interface PrivateRegistry {
  host: string;
  port: number;
  /** `https://HOST:PORT/` (HOST resolves only through the test's injected lookup). */
  url: string;
  /** The registry's own CA (not publicly trusted): the operator's `ca_file` for it. */
  caPem: string;
  /** The one package it serves. */
  pkg: { name: string; version: string; tarball: Buffer; integrity: string; marker: string };
  /** Every request: path and whether it carried the credential. */
  requests: Array<{ path: string; authorized: boolean }>;
  close(): Promise<void>;
}

/**
 * Starts the registry. It serves `GET /NAME` (the package document) and the tarball it names, and,
 * for the redaction checks, `/echo` and `/echo-gzip`, which send the credential back in a header and
 * the body (the worst a server could do). Anything without `authorization: <expected>` gets 401.
 */
export async function startPrivateRegistry(options: {
  host: string;
  expectedAuthorization: string;
}): Promise<PrivateRegistry> {
  const dir = await mkdtemp(path.join(tmpdir(), 'airlock-registry-'));
  const ca = await createEgressCa({
    dir: path.join(dir, 'ca'),
    hosts: [options.host],
    label: 'test registry',
  });
  const cert = await issueHostCertificate(ca, options.host);
  const name = 'private-greeting';
  const version = '1.0.0';
  const marker = `private-package-${createHash('sha256').update(dir).digest('hex').slice(0, 12)}`;
  await mkdir(path.join(dir, 'package'));
  await writeFile(
    path.join(dir, 'package', 'package.json'),
    JSON.stringify({ name, version, main: 'index.js' }),
  );
  await writeFile(path.join(dir, 'package', 'index.js'), `module.exports = ${JSON.stringify(marker)};\n`);
  await runProcess('tar', ['--sort=name', '--owner=0', '--group=0', '-czf', 'pkg.tgz', 'package'], {
    cwd: dir,
    timeoutMs: 30_000,
  });
  const tarball = await readFile(path.join(dir, 'pkg.tgz'));
  const integrity = `sha512-${createHash('sha512').update(tarball).digest('base64')}`;
  const shasum = createHash('sha1').update(tarball).digest('hex');
  const requests: PrivateRegistry['requests'] = [];

  let base = '';
  const server: Server = createServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => {
    const url = new URL(req.url ?? '/', 'https://registry.invalid');
    const auth = req.headers.authorization ?? '';
    const authorized = auth === options.expectedAuthorization;
    requests.push({ path: url.pathname, authorized });
    if (!authorized) {
      res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer' });
      res.end(JSON.stringify({ error: 'authentication required' }));
      return;
    }
    if (url.pathname === '/echo' || url.pathname === '/echo-gzip') {
      const body = Buffer.from(`you sent: ${auth}\nand again: ${auth}\n`);
      const gzip = url.pathname === '/echo-gzip';
      res.writeHead(200, {
        'content-type': 'text/plain',
        'x-seen-authorization': auth,
        'x-ok': 'kept',
        ...(gzip ? { 'content-encoding': 'gzip' } : {}),
      });
      res.end(gzip ? gzipSync(body) : body);
      return;
    }
    if (url.pathname === `/${name}`) {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          name,
          'dist-tags': { latest: version },
          versions: {
            [version]: {
              name,
              version,
              main: 'index.js',
              dist: { tarball: `${base}${name}/-/${name}-${version}.tgz`, integrity, shasum },
            },
          },
        }),
      );
      return;
    }
    if (url.pathname === `/${name}/-/${name}-${version}.tgz`) {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': tarball.length });
      res.end(tarball);
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not found"}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  base = `https://${options.host}:${port}/`;
  return {
    host: options.host,
    port,
    url: base,
    caPem: ca.certPem,
    pkg: { name, version, tarball, integrity, marker },
    requests,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
