import { randomBytes } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect } from 'vitest';
import type { MicroVm } from '../../src/sandbox/micro-vm.ts';

/**
 * Everything a secrets scan reads out of a running VM, searched on the host (the secret looked for
 * is never sent in): every process's environment and command line, the kernel command line, the
 * serial log, a dump of guest RAM taken through QEMU's monitor, and both disks.
 */
export interface GuestScan {
  processes: string;
  cmdline: string;
  console: Buffer;
  memory: Buffer;
  overlay: Buffer;
  scratch: Buffer;
}

/** Values planted in each place the scan looks, so each search is shown to find what is there. */
export interface ScanCanaries {
  env: string;
  serial: string;
}

/** Fresh canaries for one scan. */
export function scanCanaries(): ScanCanaries {
  return {
    env: `env-canary-${randomBytes(8).toString('hex')}`,
    serial: `serial-canary-${randomBytes(8).toString('hex')}`,
  };
}

/** Plants the canaries (a live process with one in its environment, one on the serial port) and reads the VM out. */
export async function scanVm(vm: MicroVm, canaries: ScanCanaries): Promise<GuestScan> {
  const run = async (argv: string[], env: Record<string, string> = {}) => {
    let out = '';
    const result = await vm.exec({ argv, env }, (_stream, data) => {
      out += data;
    });
    if (result.code !== 0) throw new Error(`${argv.join(' ')} exited ${result.code}: ${out}`);
    return out;
  };
  await run(['/bin/sh', '-c', 'AIRLOCK_CANARY="$C" setsid sleep 3600 </dev/null >/dev/null 2>&1 &'], {
    C: canaries.env,
  });
  const processes = await run([
    '/bin/sh',
    '-c',
    'for p in /proc/[0-9]*; do cat $p/environ $p/cmdline 2>/dev/null | tr "\\0" " "; echo; done',
  ]);
  const cmdline = await run(['/bin/cat', '/proc/cmdline']);
  await run(['/bin/sh', '-c', 'echo "$C" > /dev/ttyS0'], { C: canaries.serial });
  await run(['/bin/sync']);
  const dumpFile = path.join(tmpdir(), `airlock-ram-${randomBytes(4).toString('hex')}.core`);
  try {
    await vm.dumpGuestMemory(dumpFile);
    const [console, memory, overlay, scratch] = await Promise.all([
      readFile(vm.files.consoleLog),
      readFile(dumpFile),
      readFile(vm.files.overlay),
      readFile(vm.files.scratch),
    ]);
    return { processes, cmdline, console, memory, overlay, scratch };
  } finally {
    await rm(dumpFile, { force: true });
  }
}

/** Every form a secret could take on the wire or in memory. */
export function secretForms(secret: string): Buffer[] {
  return [
    Buffer.from(secret),
    Buffer.from(secret, 'utf16le'),
    Buffer.from(Buffer.from(secret).toString('base64')),
    Buffer.from(Buffer.from(`x-access-token:${secret}`).toString('base64')),
  ];
}

/** Whether `haystack` holds `secret` in any of its forms. */
export function containsSecret(haystack: Buffer | string, secret: string): boolean {
  const buffer = typeof haystack === 'string' ? Buffer.from(haystack) : haystack;
  return secretForms(secret).some((form) => buffer.includes(form));
}

/** Checks that each search found its canary (so a search that finds nothing is worth something). */
export function expectCanariesFound(found: GuestScan, canaries: ScanCanaries): void {
  expect(found.processes).toContain(canaries.env);
  expect(containsSecret(found.memory, canaries.env)).toBe(true);
  expect(containsSecret(found.console, canaries.serial)).toBe(true);
  expect(found.memory.length).toBeGreaterThan(256 * 1024 * 1024);
}

/** Fails when `secret` is anywhere the scan read. */
export function expectNotInGuest(found: GuestScan, name: string, secret: string): void {
  expect(containsSecret(found.processes, secret), `${name} in a process environment or command line`).toBe(
    false,
  );
  expect(containsSecret(found.cmdline, secret), `${name} on the kernel command line`).toBe(false);
  expect(containsSecret(found.console, secret), `${name} in the serial log`).toBe(false);
  expect(containsSecret(found.memory, secret), `${name} in guest RAM`).toBe(false);
  expect(containsSecret(found.overlay, secret), `${name} on the root overlay`).toBe(false);
  expect(containsSecret(found.scratch, secret), `${name} on the scratch disk`).toBe(false);
}
