import { expect, it } from 'vitest';
import { safeReturnPath } from '../../src/web/web-session.ts';

it('returns after sign-in only to a path on this origin, read as a browser reads it', () => {
  for (const good of ['/tasks', '/tasks/abc?x=1', '/tasks/abc?repo=acme%2Fwidgets#events', '/']) {
    expect(safeReturnPath(good)).toBe(good);
  }
  for (const bad of [
    '/\t/evil.example',
    '/%09/evil.example',
    '/\n/evil.example',
    '/\r\n/evil.example',
    '//evil.example',
    '/\\evil.example',
    '/\\/evil.example',
    '\\\\evil.example',
    '/%2F/evil.example',
    '/%2f%2fevil.example',
    '/%5C/evil.example',
    '/.//evil.example',
    '/tasks/..//evil.example',
    '/%',
    'https://evil.example',
    'evil.example',
    '',
    undefined,
  ]) {
    expect(safeReturnPath(bad), JSON.stringify(bad)).toBe('/tasks');
  }
});
