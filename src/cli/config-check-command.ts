import { parseArgs } from 'node:util';
import { parseRepoConfig } from '../config/repo-config.ts';
import { AirlockError } from '../errors.ts';
import { readInputFile } from './read-input-file.ts';

/** `airlock config check <file>`: validates a .github/airlock.yml, naming each invalid field. */
export default async function configCheck(args: string[]): Promise<number> {
  const { positionals } = parseArgs({ args, allowPositionals: true });
  const [file, extra] = positionals;
  if (!file || extra) throw new AirlockError('usage', 'airlock config check needs one file path');
  parseRepoConfig(readInputFile(file, "a repository's .github/airlock.yml"));
  process.stdout.write(`${file}: valid\n`);
  return 0;
}
