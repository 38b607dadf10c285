import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ProxyError } from '../errors.ts';
import { runProcess } from '../process/run-process.ts';

/** How long `openssl` may take for one key or certificate. */
const OPENSSL_TIMEOUT_MS = 30_000;
/** A CA lives as long as the environment that trusts it; environments are rebuilt well before. */
const CA_DAYS = 3650;
/** Host certificates are issued each time a proxy starts, so they need not live long. */
const HOST_CERT_DAYS = 7;

/**
 * A certificate authority the egress proxy signs host certificates with, for the hosts whose
 * requests it must read to add a credential. The certificate goes into the guest's trust store;
 * the key stays in `keyFile` on the host (mode 0600), and only `openssl` on the host reads it.
 */
export interface EgressCa {
  /** The CA certificate (PEM): what the guest trusts. */
  readonly certPem: string;
  /** The CA's private key on the host. Never copied anywhere else. */
  readonly keyFile: string;
  /** The only host names this CA can sign for (X.509 name constraints). */
  readonly hosts: readonly string[];
  /** OpenSSL's subject hash of the certificate: its `HASH.0` name in a hashed certificate directory. */
  readonly subjectHash: string;
  readonly dir: string;
}

/** A host certificate and its key, for the proxy's side of an intercepted TLS connection. */
export interface HostCertificate {
  certPem: string;
  keyPem: string;
}

const HOST_NAME = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$/;

/**
 * Makes a CA in `dir` (created 0700) that can sign for `hosts` and nothing else: its certificate
 * carries a critical name constraint permitting exactly those DNS names, so a guest that trusts it
 * trusts it for no other host, even if the key were ever taken. Uses the `openssl` CLI (Node has no
 * X.509 writer), through the process wrapper. EC P-256 keys: fast to make, accepted everywhere.
 */
export async function createEgressCa(options: {
  dir: string;
  hosts: readonly string[];
  label: string;
}): Promise<EgressCa> {
  const hosts = [...new Set(options.hosts.map((h) => h.toLowerCase()))].sort();
  if (!hosts.length) throw new ProxyError('egress_ca', 'an egress CA needs at least one host to sign for');
  for (const host of hosts) {
    if (!HOST_NAME.test(host))
      throw new ProxyError(
        'egress_ca',
        `an egress CA can only sign for host names, not ${JSON.stringify(host)}`,
      );
  }
  const { dir } = options;
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const keyFile = path.join(dir, 'ca.key');
  const certFile = path.join(dir, 'ca.crt');
  await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', keyFile], dir);
  await chmod(keyFile, 0o600);
  const label = options.label.replace(/[^A-Za-z0-9 ._-]/g, '-').slice(0, 40);
  await openssl(
    [
      'req',
      '-x509',
      '-new',
      '-key',
      keyFile,
      '-sha256',
      '-days',
      String(CA_DAYS),
      '-subj',
      `/O=airlock/CN=airlock egress CA ${label}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE,pathlen:0',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
      '-addext',
      `nameConstraints=critical,${hosts.map((h) => `permitted;DNS:${h}`).join(',')}`,
      '-out',
      certFile,
    ],
    dir,
  );
  const { stdout: hash } = await openssl(['x509', '-noout', '-subject_hash', '-in', certFile], dir);
  return { certPem: await readFile(certFile, 'utf8'), keyFile, hosts, dir, subjectHash: hash.trim() };
}

/** Issues a certificate for `host`, signed by `ca`; its key is made fresh and kept in memory. */
export async function issueHostCertificate(ca: EgressCa, host: string): Promise<HostCertificate> {
  const name = host.toLowerCase();
  if (!ca.hosts.includes(name))
    throw new ProxyError(
      'egress_ca',
      `the egress CA in ${ca.dir} cannot sign for ${host} (it signs for ${ca.hosts.join(', ')})`,
    );
  const work = path.join(ca.dir, `issue-${process.pid}-${Math.random().toString(36).slice(2)}`);
  await mkdir(work, { mode: 0o700 });
  try {
    const keyFile = path.join(work, 'host.key');
    const caCert = path.join(work, 'ca.crt');
    await writeFile(caCert, ca.certPem);
    await openssl(
      ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', keyFile],
      work,
    );
    const { stdout: certPem } = await openssl(
      [
        'req',
        '-x509',
        '-new',
        '-key',
        keyFile,
        '-CA',
        caCert,
        '-CAkey',
        ca.keyFile,
        '-sha256',
        '-days',
        String(HOST_CERT_DAYS),
        '-subj',
        `/CN=${name}`,
        '-addext',
        `subjectAltName=DNS:${name}`,
        '-addext',
        'basicConstraints=critical,CA:FALSE',
        '-addext',
        'keyUsage=critical,digitalSignature',
        '-addext',
        'extendedKeyUsage=serverAuth',
      ],
      work,
    );
    return { certPem, keyPem: await readFile(keyFile, 'utf8') };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function openssl(args: string[], cwd: string) {
  try {
    return await runProcess('openssl', args, { cwd, timeoutMs: OPENSSL_TIMEOUT_MS });
  } catch (cause) {
    throw new ProxyError('egress_ca', `openssl ${args[0]} failed while making egress certificates`, {
      cause,
      hint: 'install the Debian package openssl on the host (bash .ci/setup.sh does)',
    });
  }
}
