import { defineConfig } from 'vitest/config';

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
  },
});
