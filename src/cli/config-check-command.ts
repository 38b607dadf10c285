import { parseArgs } from 'node:util';
import { parseRepoConfig } from '../config/repo-config.ts';
import { AirlockError, ConfigError } from '../errors.ts';
import { readInputFile } from './read-input-file.ts';

/** `airlock config check <file>`: validates a .github/airlock.yml, naming each invalid field. */
export default async function configCheck(args: string[]): Promise<number> {
  const { positionals } = parseArgs({ args, allowPositionals: true });
  const [file, extra] = positionals;
  if (!file || extra) throw new AirlockError('usage', 'airlock config check needs one file path');
  const text = readInputFile(file, "a repository's .github/airlock.yml");
  try {
    parseRepoConfig(text);
  } catch (error) {
    // The parser names the file as GitHub would; here the reader knows it by the path they gave.
    if (!(error instanceof ConfigError)) throw error;
    throw new ConfigError(`${file} is not a valid .github/airlock.yml`, error.issues, { cause: error });
  }
  process.stdout.write(`${file}: valid\n`);
  return 0;
}
