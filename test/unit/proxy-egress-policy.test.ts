import { describe, expect, it } from 'vitest';
import { isPublicAddress } from '../../src/proxy/address-policy.ts';
import { hostAllowed } from '../../src/proxy/egress-policy.ts';

describe('isPublicAddress', () => {
  it.each([
    '127.0.0.1',
    '127.255.0.1',
    '10.1.2.3',
    '172.16.0.1',
    '172.31.255.255',
    '192.168.1.1',
    '169.254.169.254',
    '100.64.0.1',
    '100.100.100.200',
    '0.0.0.0',
    '224.0.0.1',
    '255.255.255.255',
    '::',
    '::1',
    'fe80::1',
    'fc00::1',
    'fd00:ec2::254',
    'ff02::1',
    '::ffff:127.0.0.1',
    '::ffff:7f00:1',
    '0:0:0:0:0:ffff:a9fe:a9fe',
    '::ffff:0:10.0.0.1',
    '64:ff9b::a00:1',
    '2002:7f00:1::',
    'not-an-address',
  ])('refuses %s', (address) => {
    expect(isPublicAddress(address)).toBe(false);
  });

  it.each(['93.184.216.34', '8.8.8.8', '172.32.0.1', '100.128.0.1', '2606:4700::1111', '::ffff:8.8.8.8'])(
    'allows %s',
    (address) => {
      expect(isPublicAddress(address)).toBe(true);
    },
  );
});

describe('hostAllowed', () => {
  const allow = ['registry.npmjs.test', '*.pkg.test'];
  it('matches exact names and wildcard subdomains, case-insensitively', () => {
    expect(hostAllowed('registry.npmjs.test', allow)).toBe(true);
    expect(hostAllowed('REGISTRY.npmjs.test.', allow)).toBe(true);
    expect(hostAllowed('a.pkg.test', allow)).toBe(true);
    expect(hostAllowed('a.b.pkg.test', allow)).toBe(true);
  });
  it('matches nothing else', () => {
    expect(hostAllowed('pkg.test', allow)).toBe(false);
    expect(hostAllowed('evilpkg.test', allow)).toBe(false);
    expect(hostAllowed('sub.registry.npmjs.test', allow)).toBe(false);
    expect(hostAllowed('registry.npmjs.test.evil', allow)).toBe(false);
    expect(hostAllowed('anything', [])).toBe(false);
  });
});
