import { lstat, readdir } from 'node:fs/promises';
import path from 'node:path';

/** Bytes a directory tree occupies on disk (allocated blocks: sparse disk images count what they use). */
export async function directoryBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) total += await directoryBytes(full);
    else total += (await lstat(full)).blocks * 512;
  }
  return total;
}
