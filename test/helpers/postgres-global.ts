import type { TestProject } from 'vitest/node';
import { type PostgresCluster, startPostgresCluster } from './postgres-cluster.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** URL of the test run's PostgreSQL cluster (its `postgres` database). */
    postgresUrl: string;
  }
}

let cluster: PostgresCluster | null = null;

/**
 * vitest global set-up: one throwaway PostgreSQL cluster for the whole run, started before the
 * first file and removed after the last. Each test store makes its own database in it.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  cluster ??= await startPostgresCluster();
  project.provide('postgresUrl', cluster.url);
  return async () => {
    await cluster?.stop();
    cluster = null;
  };
}
