import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { NODE_FLAGS } from '../../src/process/node-flags.ts';

const root = new URL('../../', import.meta.url);
const scripts = (
  JSON.parse(readFileSync(new URL('package.json', root), 'utf8')) as {
    scripts: Record<string, string>;
  }
).scripts;

it.each([
  ['npm start', scripts.start],
  ['npm run airlock', scripts.airlock],
  ['the airlock command', readFileSync(new URL('src/cli.ts', root), 'utf8').split('\n')[0]],
])('%s runs Node with airlock’s flags', (_name, commandLine) => {
  expect(commandLine).toMatch(/\bnode\b/);
  for (const flag of NODE_FLAGS) expect(commandLine?.split(/\s+/)).toContain(flag);
});

it('the pinned Node accepts every flag', () => {
  // An unknown flag makes Node refuse to start, so an upgrade that drops one fails here first.
  const out = execFileSync(
    process.execPath,
    [...NODE_FLAGS, '-p', 'require("v8").getHeapStatistics().total_heap_size > 0'],
    {
      encoding: 'utf8',
    },
  );
  expect(out.trim()).toBe('true');
});
