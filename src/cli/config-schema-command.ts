import { repoConfigJsonSchema } from '../config/repo-config.ts';

/** `airlock config schema`: prints the JSON Schema of .github/airlock.yml. */
export default async function configSchema(): Promise<number> {
  process.stdout.write(`${JSON.stringify(repoConfigJsonSchema(), null, 2)}\n`);
  return 0;
}
