import { readdirSync, readFileSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';

/** What is written next to each VM's overlay so that a later process can find and reap it. */
export const VmRecord = z.object({
  vmId: z.string(),
  taskId: z.string(),
  pid: z.number().int().positive().optional(),
  startedAt: z.string(),
  /** The process that started the VM, and its start time (so a reused pid is not taken for it). */
  owner: z.object({ pid: z.number().int().positive(), startTicks: z.number().int() }).optional(),
});
export type VmRecord = z.infer<typeof VmRecord>;

/**
 * The on-disk registry of VMs: one directory per VM under `<dataDir>/vms`, holding its overlay,
 * control socket and `vm.json` (task id and VMM pid). A VM is only ever started after its record
 * is written, and its directory is deleted only after its VMM is dead.
 */
export class VmRegistry {
  readonly root: string;

  constructor(dataDir: string) {
    this.root = path.join(dataDir, 'vms');
  }

  /** Creates the directory of a new VM and writes its record; returns the directory. */
  async open(record: VmRecord): Promise<string> {
    const dir = this.dir(record.vmId);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeFile(path.join(dir, 'vm.json'), JSON.stringify(record), { mode: 0o600 });
    return dir;
  }

  /** Records the VMM's pid once it is spawned. */
  async setPid(record: VmRecord, pid: number): Promise<void> {
    await writeFile(path.join(this.dir(record.vmId), 'vm.json'), JSON.stringify({ ...record, pid }), {
      mode: 0o600,
    });
  }

  /** Rewrites a VM's record with `change` (a warm VM taken by a task gets the task's id). */
  async update(record: VmRecord, change: Partial<VmRecord>): Promise<void> {
    const file = path.join(this.dir(record.vmId), 'vm.json');
    const current = VmRecord.parse(JSON.parse(readFileSync(file, 'utf8')));
    await writeFile(file, JSON.stringify({ ...current, ...change }), { mode: 0o600 });
  }

  /** Every VM record on disk (unreadable ones are returned with what could be read). */
  list(): Array<VmRecord & { dir: string }> {
    let names: string[];
    try {
      names = readdirSync(this.root);
    } catch {
      return [];
    }
    return names.map((vmId) => {
      const dir = this.dir(vmId);
      try {
        return { ...VmRecord.parse(JSON.parse(readFileSync(path.join(dir, 'vm.json'), 'utf8'))), dir };
      } catch {
        return { vmId, taskId: 'unknown', startedAt: '', dir };
      }
    });
  }

  /** Deletes a VM's directory (overlay, sockets, record). */
  async remove(vmId: string): Promise<void> {
    await rm(this.dir(vmId), { recursive: true, force: true });
  }

  dir(vmId: string): string {
    if (!/^[a-z0-9-]+$/.test(vmId)) throw new Error(`invalid VM id ${vmId}`);
    return path.join(this.root, vmId);
  }
}

/** This process, as a VM record's owner. */
export function currentOwner(): { pid: number; startTicks: number } {
  const startTicks = processStartTicks(process.pid);
  if (startTicks === undefined) throw new Error("cannot read this process's start time from /proc");
  return { pid: process.pid, startTicks };
}

/**
 * Whether the process that started a VM is still running: its pid is live (not a zombie) and
 * started when the record says. A record without an owner (written before owners were recorded)
 * counts as orphaned.
 */
export function ownerAlive(owner: VmRecord['owner']): boolean {
  if (!owner) return false;
  return processStartTicks(owner.pid) === owner.startTicks;
}

/** A live process's start time in clock ticks since boot (`/proc/PID/stat` field 22). */
function processStartTicks(pid: number): number | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
  const ticks = Number(fields[19]);
  return Number.isInteger(ticks) ? ticks : undefined;
}

/** Whether a pid is alive and its command line mentions `marker` (guards against pid reuse). */
export function processMatches(pid: number, marker: string): boolean {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes(marker);
  } catch {
    return false;
  }
}

/** Kills a whole process group (the VMM and its guestfwd helpers), ignoring ones already gone. */
export function killProcessGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}
