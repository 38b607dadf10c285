import path from 'node:path';
import { defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

const root = import.meta.dirname;
const file = (spec: TestSpecification) => path.relative(root, spec.moduleId);
/** Where a file's tests run: their own VMs, loopback servers and processes, or nothing at all. */
const RANKS = ['test/e2e/', 'test/integration/'];
const rank = (spec: TestSpecification) => {
  const i = RANKS.findIndex((dir) => file(spec).startsWith(dir));
  return i === -1 ? RANKS.length : i;
};

/**
 * Longest files first, whatever their project, so that neither worker is left alone with a long
 * file at the end. The durations are those of the last run (vitest's cache); without them (a fresh
 * clone, CI), the files that boot VMs go first, then those that start servers, each largest first.
 */
class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const cache = this.ctx.cache;
    const last = (spec: TestSpecification) => cache.getFileTestResults(`${spec.project.name}:${file(spec)}`);
    const size = (spec: TestSpecification) =>
      cache.getFileStats(`${spec.project.name}:${file(spec)}`)?.size ?? 0;
    return [...files].sort((a, b) => {
      const [ra, rb] = [last(a), last(b)];
      if (ra && rb) return Number(rb.failed) - Number(ra.failed) || rb.duration - ra.duration;
      // A file without a duration is new or was renamed: it goes first, as in vitest's own order.
      if (ra || rb) return ra ? 1 : -1;
      return rank(a) - rank(b) || size(b) - size(a);
    });
  }
}

// One PostgreSQL cluster serves the whole run (root-level global set-up; the projects do not
// inherit it, or each would start its own).
// VM tests boot real microVMs under TCG on CI machines: give them room.
// Unit and integration files share their worker's modules (isolate: false): each file imports
// airlock anew otherwise, which costs more than most of their tests. They open and close their
// own servers and databases. VM test files keep a process each.
export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    globalSetup: ['test/helpers/postgres-global.ts'],
    maxWorkers: 2,
    reporters: ['default'],
    sequence: { sequencer: LongestFirst },
    projects: [
      {
        extends: true,
        test: { name: 'unit', include: ['test/unit/**/*.test.ts'], isolate: false, globalSetup: [] },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts', 'src/**/*.test.ts'],
          isolate: false,
          globalSetup: [],
        },
      },
      { extends: true, test: { name: 'e2e', include: ['test/e2e/**/*.test.ts'], globalSetup: [] } },
    ],
  },
});
