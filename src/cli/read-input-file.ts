import { readFileSync } from 'node:fs';
import path from 'node:path';
import { AirlockError } from '../errors.ts';

/**
 * Reads a file a command was given, turning the file system's error codes into a message that
 * names the file and says what to do.
 */
export function readInputFile(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const full = path.resolve(file);
    const problem =
      code === 'ENOENT'
        ? { message: `${full} does not exist`, hint: `give the path of ${what}` }
        : code === 'EISDIR'
          ? { message: `${full} is a folder`, hint: `give the path of ${what}, not of the folder holding it` }
          : code === 'EACCES'
            ? { message: `${full} cannot be read (permission denied)`, hint: 'check its permissions' }
            : {
                message: `${full} cannot be read (${code ?? (error as Error).message})`,
                hint: `give the path of ${what}`,
              };
    throw new AirlockError('file_unreadable', problem.message, { cause: error, hint: problem.hint });
  }
}
