import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { AirlockError } from '../errors.ts';

/**
 * Sets variables in a .env file: lines for other variables (and comments) are kept, lines for the
 * given ones are replaced, and the file is written readable by its owner only (it holds keys).
 * Values are double-quoted with newlines written as `\n`, which the .env reader turns back; a
 * value holding a double quote cannot be written that way and is refused.
 */
export function updateEnvFile(file: string, values: Record<string, string>): void {
  const keep = existsSync(file)
    ? readFileSync(file, 'utf8')
        .split('\n')
        .filter((line) => {
          const key = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=/.exec(line)?.[1];
          return !(key && key in values);
        })
    : [];
  while (keep.length && keep.at(-1) === '') keep.pop();
  const added = Object.entries(values).map(([key, value]) => {
    if (value.includes('"')) {
      throw new AirlockError('env_file', `${key} holds a double quote and cannot be written to ${file}`, {
        hint: `set ${key} in ${file} by hand`,
      });
    }
    return `${key}="${value.replaceAll('\n', '\\n')}"`;
  });
  writeFileSync(file, `${[...keep, ...added].join('\n')}\n`, { mode: 0o600 });
}
