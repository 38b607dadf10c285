import { readdirSync, readFileSync } from 'node:fs';

/** Pids of the processes whose command line contains `text` (a VM's QEMU names its data directory). */
export function processesNaming(text: string): number[] {
  const found: number[] = [];
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      if (readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(text)) found.push(Number(pid));
    } catch {
      // Gone meanwhile.
    }
  }
  return found;
}
