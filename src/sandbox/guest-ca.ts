import { SandboxError } from '../errors.ts';
import type { Vm } from './sandbox.ts';

/** Where the egress CA's certificate goes in the guest (Debian's place for local CAs). */
export const GUEST_CA_FILE = '/usr/local/share/ca-certificates/airlock-egress.crt';
/** The system bundle update-ca-certificates writes, the egress CA included. */
const GUEST_CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';

/**
 * The environment that points TLS clients which do not read the system store by default at it:
 * Node (NODE_EXTRA_CA_CERTS adds to its built-in list), npm (which does not honour that variable
 * through a proxy, so it gets the whole bundle), pip, requests, curl, Git and OpenSSL-based tools
 * (the system bundle, which now holds the egress CA).
 */
export const GUEST_CA_ENV: Readonly<Record<string, string>> = {
  NODE_EXTRA_CA_CERTS: GUEST_CA_FILE,
  NPM_CONFIG_CAFILE: GUEST_CA_BUNDLE,
  SSL_CERT_FILE: GUEST_CA_BUNDLE,
  PIP_CERT: GUEST_CA_BUNDLE,
  REQUESTS_CA_BUNDLE: GUEST_CA_BUNDLE,
  CURL_CA_BUNDLE: GUEST_CA_BUNDLE,
  GIT_SSL_CAINFO: GUEST_CA_BUNDLE,
};

/**
 * Makes the guest trust the egress CA (its certificate only; the key never leaves the host), as
 * update-ca-certificates would for one added certificate: the certificate in
 * /usr/local/share/ca-certificates (so later runs of update-ca-certificates keep it), in the hashed
 * directory /etc/ssl/certs as HASH.0, and appended to the system bundle. Running
 * update-ca-certificates itself takes minutes under TCG (it re-links every certificate). Callers
 * pass {@link GUEST_CA_ENV} to the commands they run, for tools that keep their own list.
 */
export async function installEgressCa(
  vm: Pick<Vm, 'exec' | 'writeFile'>,
  ca: { certPem: string; subjectHash: string },
): Promise<void> {
  const { certPem, subjectHash } = ca;
  if (!certPem.includes('-----BEGIN CERTIFICATE-----') || certPem.includes('PRIVATE KEY'))
    throw new SandboxError('guest_ca', 'only a PEM certificate (never a key) can be installed in the guest');
  if (!/^[0-9a-f]{8}$/.test(subjectHash))
    throw new SandboxError('guest_ca', `not an OpenSSL subject hash: ${JSON.stringify(subjectHash)}`);
  await vm.writeFile(GUEST_CA_FILE, certPem, { mode: 0o644 });
  let output = '';
  const script = [
    'set -e',
    `[ -f ${GUEST_CA_BUNDLE} ] || { echo "${GUEST_CA_BUNDLE} is missing: the image needs the Debian package ca-certificates" >&2; exit 3; }`,
    `cp ${GUEST_CA_FILE} /etc/ssl/certs/airlock-egress.pem`,
    `ln -sf airlock-egress.pem /etc/ssl/certs/${subjectHash}.0`,
    // Once only: the bundle keeps one copy however often this runs.
    `grep -qF "$(sed -n 2p ${GUEST_CA_FILE})" ${GUEST_CA_BUNDLE} || cat ${GUEST_CA_FILE} >> ${GUEST_CA_BUNDLE}`,
  ].join('\n');
  const result = await vm.exec({ argv: ['/bin/sh', '-c', script], timeoutMs: 60_000 }, (_stream, data) => {
    output = (output + data).slice(-4096);
  });
  if (result.code !== 0)
    throw new SandboxError(
      'guest_ca',
      `could not add the egress CA to the guest's trust store (exit ${result.code ?? result.signal}): ${output.trim()}`,
    );
}
