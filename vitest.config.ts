import path from 'node:path';
import { defineConfig } from 'vitest/config';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * Longest files first, so neither worker is left alone with a long file at the end. vitest does
 * this itself from the durations of an earlier run; without them (a fresh clone, CI) it starts
 * the largest files first, and the files that boot VMs are the longest whatever their size.
 */
class LongestFirst extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const root = this.ctx.config.root;
    const timed = sorted.some((f) =>
      this.ctx.cache.getFileTestResults(`${f.project.name}:${path.relative(root, f.moduleId)}`),
    );
    if (timed) return sorted;
    const bootsVms = (f: TestSpecification) => path.relative(root, f.moduleId).startsWith('test/e2e/');
    return [...sorted.filter(bootsVms), ...sorted.filter((f) => !bootsVms(f))];
  }
}

// VM tests boot real microVMs under TCG on CI machines: give them room, and never run two files
// of VM tests against the same 2 cores at once (see test/e2e).
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'src/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    maxWorkers: 2,
    reporters: ['default'],
    sequence: { sequencer: LongestFirst },
  },
});
