import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { debianSourcesFor, parseDebianSources } from '../../src/proxy/debian-sources.ts';
import { guestAptSources } from '../../src/sandbox/guest-apt.ts';

const DEB822 = `Types: deb
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://mirror.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
`;

describe('Debian sources', () => {
  it('reads deb822 stanzas and one-line entries, binary only', () => {
    expect(parseDebianSources(DEB822, 'debian.sources')).toEqual([
      {
        uri: 'http://mirror.example/debian',
        suites: ['bookworm', 'bookworm-updates'],
        components: ['main', 'contrib'],
        trusted: false,
      },
      {
        uri: 'http://mirror.example/debian-security',
        suites: ['bookworm-security'],
        components: ['main'],
        trusted: false,
      },
    ]);
    expect(
      parseDebianSources(
        '# comment\ndeb [trusted=yes arch=amd64] http://127.0.0.1:8080/ bookworm main\ndeb-src http://x.example/ bookworm main\n',
        'list',
      ),
    ).toEqual([{ uri: 'http://127.0.0.1:8080/', suites: ['bookworm'], components: ['main'], trusted: true }]);
    expect(() => parseDebianSources('deb\n', 'bad.list')).toThrow(/bad.list: cannot read the line/);
  });

  it("keeps only the guest release's suites, and says so when there are none", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'airlock-sources-'));
    try {
      const file = path.join(dir, 'sources.list');
      await writeFile(
        file,
        `${DEB822}\nTypes: deb\nURIs: https://vendor.example/apt\nSuites: vendor-bookworm\nComponents: main\n`,
      );
      const sources = debianSourcesFor('bookworm', file);
      expect(sources.map((s) => s.uri)).toEqual([
        'http://mirror.example/debian',
        'http://mirror.example/debian-security',
      ]);
      expect(() => debianSourcesFor('trixie', file)).toThrow(/no Debian archive for trixie is configured in/);
      expect(guestAptSources(sources)).toBe(
        [
          'deb http://10.0.2.100/debian/0 bookworm main contrib',
          'deb http://10.0.2.100/debian/0 bookworm-updates main contrib',
          'deb http://10.0.2.100/debian/1 bookworm-security main',
          '',
        ].join('\n'),
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
