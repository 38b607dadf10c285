import { SandboxError } from '../errors.ts';
import { DEBIAN_ROUTE } from '../proxy/debian-proxy.ts';
import type { DebianSource } from '../proxy/debian-sources.ts';
import { GUEST_PROXY_ADDRESS } from './qemu-args.ts';
import type { Vm } from './sandbox.ts';

/** How long `apt-get update` and `apt-get install` may take each (TCG guests are slow). */
const APT_TIMEOUT_MS = 30 * 60_000;

/** A Debian package name, optionally with `=version` (Debian policy §5.6.1, §5.6.12). */
const PACKAGE = /^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?$/;

/**
 * The guest's `/etc/apt/sources.list` for the proxy's Debian route: archive N of `archives` at
 * `http://10.0.2.100/debian/N`, with the suites and components the operator configured.
 */
export function guestAptSources(archives: readonly DebianSource[]): string {
  return archives
    .flatMap((archive, index) => {
      const options = archive.trusted ? '[trusted=yes] ' : '';
      const uri = `http://${GUEST_PROXY_ADDRESS}${DEBIAN_ROUTE}${index}`;
      return archive.suites.map((suite) => `deb ${options}${uri} ${suite} ${archive.components.join(' ')}`);
    })
    .join('\n')
    .concat('\n');
}

/**
 * Installs Debian packages in the guest as root from the proxy's Debian route (the task proxy must
 * have been started with the same `archives`): points apt at the route, runs `apt-get update`, then
 * `apt-get install`. Throws a SandboxError with apt's last lines when either fails.
 */
export async function installDebianPackages(
  vm: Pick<Vm, 'exec' | 'writeFile'>,
  archives: readonly DebianSource[],
  packages: readonly string[],
  options: { onOutput?: (stream: 'stdout' | 'stderr', data: string) => void; signal?: AbortSignal } = {},
): Promise<void> {
  const bad = packages.filter((p) => !PACKAGE.test(p));
  if (bad.length)
    throw new SandboxError(
      'apt_failed',
      `not Debian package names: ${bad.map((p) => JSON.stringify(p)).join(', ')}`,
    );
  if (!packages.length) return;
  await vm.writeFile('/etc/apt/sources.list', guestAptSources(archives), { mode: 0o644 });
  const apt = async (what: string, argv: string[]) => {
    let tail = '';
    const result = await vm.exec(
      {
        argv,
        env: { DEBIAN_FRONTEND: 'noninteractive' },
        timeoutMs: APT_TIMEOUT_MS,
      },
      (stream, data) => {
        tail = (tail + data).slice(-8 * 1024);
        options.onOutput?.(stream, data);
      },
      options.signal,
    );
    if (result.code !== 0) {
      throw new SandboxError(
        'apt_failed',
        `${what} failed in the VM (exit ${result.code ?? result.signal}): ${tail.trim().split('\n').slice(-10).join('\n')}`,
        {
          hint: 'check the package names, and that the Debian archive the host is configured with (AIRLOCK_DEBIAN_SOURCES) has them',
        },
      );
    }
  };
  // The image's own source list names the host's archive, which the guest cannot reach.
  await apt('clearing the image apt sources', [
    '/bin/sh',
    '-c',
    'rm -f /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources',
  ]);
  await apt('apt-get update', ['apt-get', '-q', 'update', '--error-on=any', '-o', 'Acquire::Retries=2']);
  await apt(`apt-get install ${packages.join(' ')}`, [
    'apt-get',
    '-q',
    '-y',
    'install',
    '--no-install-recommends',
    ...packages,
  ]);
}
