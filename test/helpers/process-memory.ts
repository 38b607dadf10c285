import { closeSync, openSync, readFileSync, readSync } from 'node:fs';

/**
 * Whether any readable mapping of process `pid` holds `needle` (as UTF-8 or UTF-16LE, the two
 * forms V8 keeps strings in). Reads /proc/PID/mem region by region; needs the rights to trace the
 * process (root, or the same user with ptrace allowed).
 */
export function processMemoryContains(pid: number, needle: string): boolean {
  const forms = [Buffer.from(needle, 'utf8'), Buffer.from(needle, 'utf16le')];
  const longest = Math.max(...forms.map((f) => f.length));
  const maps = readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n');
  const fd = openSync(`/proc/${pid}/mem`, 'r');
  try {
    for (const line of maps) {
      const match = /^([0-9a-f]+)-([0-9a-f]+) r/.exec(line);
      if (!match || line.includes('[vvar]') || line.includes('[vsyscall]')) continue;
      let at = Number.parseInt(match[1]!, 16);
      const end = Number.parseInt(match[2]!, 16);
      const chunk = Buffer.alloc(4 * 1024 * 1024);
      let carry = Buffer.alloc(0);
      while (at < end) {
        const size = Math.min(chunk.length, end - at);
        let read = 0;
        try {
          read = readSync(fd, chunk, 0, size, at);
        } catch {
          break; // a region that cannot be read (guard pages)
        }
        if (read <= 0) break;
        const window = Buffer.concat([carry, chunk.subarray(0, read)]);
        if (forms.some((form) => window.includes(form))) return true;
        carry = Buffer.from(window.subarray(Math.max(0, window.length - longest + 1)));
        at += read;
      }
    }
    return false;
  } finally {
    closeSync(fd);
  }
}
