import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { codexAdapter } from '../../src/agents/codex-adapter.ts';
import { runAgent } from '../../src/agents/run-agent.ts';
import { hostTscKhz } from '../../src/sandbox/accel-probe.ts';
import type { ExecAuditLoss, ExecAuditRecord } from '../../src/sandbox/exec-audit.ts';
import { MicroVmSandbox } from '../../src/sandbox/microvm-sandbox.ts';
import { MAX_PROXY_CONNECTIONS } from '../../src/sandbox/proxy-gate.ts';
import type { Vm } from '../../src/sandbox/sandbox.ts';
import { memoryLogger } from '../helpers/memory-logger.ts';
import { testSnapshotDir, testVmImage } from '../helpers/vm-image.ts';

// What a hostile agent (uid 1000) or repository can try inside a real microVM, against the guest
// agent and the host. Two VMs: one with the production limits, one with a low exec-record rate.
const AGENT = 1000;
let dir: string;
let proxy: Server;
const proxyConnections = new Set<Socket>();
let sandbox: MicroVmSandbox;
let vm: Vm;
let busy: Vm;
const execs: ExecAuditRecord[] = [];
const malformed: string[] = [];
const busyExecs: ExecAuditRecord[] = [];
const busyLosses: ExecAuditLoss[] = [];

async function run(target: Vm, script: string, uid?: number, stdin?: string, timeoutMs = 540_000) {
  let stdout = '';
  let stderr = '';
  const result = await target.exec(
    {
      argv: ['sh', '-c', script],
      timeoutMs,
      ...(uid !== undefined ? { uid, env: { HOME: '/home/agent' } } : {}),
      ...(stdin !== undefined ? { stdin } : {}),
    },
    (stream, data) => {
      if (stream === 'stdout') stdout += data;
      else stderr += data;
    },
  );
  return { ...result, stdout, stderr };
}

/** Puts a file in the guest through a shell, the way task code would (not through writeFile). */
const plant = (target: Vm, file: string, content: Buffer) =>
  run(target, `base64 -d > '${file}' && chmod 0755 '${file}'`, AGENT, content.toString('base64'));

/** A static x86-64 ELF executable: one loadable segment, `code` at its entry point. */
function elf64(code: Buffer): Buffer {
  const base = 0x400000;
  const headers = 64 + 56;
  const file = Buffer.alloc(headers + code.length);
  file.write('\x7fELF', 0, 'latin1');
  file.set([2, 1, 1], 4);
  file.writeUInt16LE(2, 16); // executable
  file.writeUInt16LE(0x3e, 18); // x86-64
  file.writeUInt32LE(1, 20);
  file.writeBigUInt64LE(BigInt(base + headers), 24);
  file.writeBigUInt64LE(64n, 32);
  file.writeUInt16LE(64, 52);
  file.writeUInt16LE(56, 54);
  file.writeUInt16LE(1, 56);
  file.writeUInt32LE(1, 64); // PT_LOAD
  file.writeUInt32LE(5, 68); // read + execute
  file.writeBigUInt64LE(BigInt(base), 80);
  file.writeBigUInt64LE(BigInt(base), 88);
  file.writeBigUInt64LE(BigInt(file.length), 96);
  file.writeBigUInt64LE(BigInt(file.length), 104);
  file.writeBigUInt64LE(0x1000n, 112);
  code.copy(file, headers);
  return file;
}

/**
 * A static i386 ELF executable that calls the 32-bit `execveat` (int 0x80, syscall 358) on
 * /bin/true with `marker` as its argument, and exits with the error if that fails.
 */
function elf32Execveat(marker: string): Buffer {
  const base = 0x08048000;
  const headers = 52 + 32;
  const codeLength = 35;
  const pathAt = headers + codeLength + 1;
  const markerAt = pathAt + '/bin/true\0'.length;
  const argvAt = Math.ceil((markerAt + marker.length + 1) / 4) * 4;
  const file = Buffer.alloc(argvAt + 12);
  file.write('\x7fELF', 0, 'latin1');
  file.set([1, 1, 1], 4);
  file.writeUInt16LE(2, 16);
  file.writeUInt16LE(3, 18); // i386
  file.writeUInt32LE(1, 20);
  file.writeUInt32LE(base + headers, 24);
  file.writeUInt32LE(52, 28);
  file.writeUInt16LE(52, 40);
  file.writeUInt16LE(32, 42);
  file.writeUInt16LE(1, 44);
  file.writeUInt32LE(1, 52); // PT_LOAD
  file.writeUInt32LE(0, 56);
  file.writeUInt32LE(base, 60);
  file.writeUInt32LE(base, 64);
  file.writeUInt32LE(file.length, 68);
  file.writeUInt32LE(file.length, 72);
  file.writeUInt32LE(5, 76);
  file.writeUInt32LE(0x1000, 80);
  const imm = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeInt32LE(n);
    return [...b];
  };
  const code = [
    ...[0xb8, ...imm(358)], // mov eax, execveat
    ...[0xbb, ...imm(-100)], // mov ebx, AT_FDCWD
    ...[0xb9, ...imm(base + pathAt)], // mov ecx, path
    ...[0xba, ...imm(base + argvAt)], // mov edx, argv
    ...[0x31, 0xf6], // xor esi, esi (no environment)
    ...[0x31, 0xff], // xor edi, edi (no flags)
    ...[0xcd, 0x80], // int 0x80
    ...[0x89, 0xc3], // mov ebx, eax
    ...[0xb8, ...imm(1)], // mov eax, exit
    ...[0xcd, 0x80], // int 0x80
  ];
  expect(code).toHaveLength(codeLength);
  file.set(code, headers);
  file.write('/bin/true\0', pathAt, 'latin1');
  file.write(`${marker}\0`, markerAt, 'latin1');
  file.writeUInt32LE(base + pathAt, argvAt);
  file.writeUInt32LE(base + markerAt, argvAt + 4);
  return file;
}

/** Host processes serving this test's VMs' proxy connections (QEMU's guestfwd helpers). */
function proxyHelpers(): number {
  let count = 0;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      if (cmdline.startsWith('socat\0') && cmdline.includes(dir)) count++;
    } catch {
      // The process ended while we looked.
    }
  }
  return count;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'airlock-harden-'));
  // Stands in for the task's proxy: answers a request, and holds a connection that sends nothing.
  proxy = createServer((socket) => {
    proxyConnections.add(socket);
    socket.on('close', () => proxyConnections.delete(socket));
    socket.once('data', () =>
      socket.end('HTTP/1.1 200 OK\r\ncontent-length: 13\r\nconnection: close\r\n\r\nproxy reached'),
    );
  }).listen(path.join(dir, 'proxy.sock'));
  const image = testVmImage();
  sandbox = new MicroVmSandbox({
    image,
    accel: 'tcg',
    dataDir: dir,
    log: memoryLogger().log,
    tscKhz: hostTscKhz(),
    // Restored from the shared base snapshot, as production starts VMs.
    snapshotDir: testSnapshotDir(image),
    // Two VMs boot at once under TCG on a shared machine.
    bootTimeoutMs: 240_000,
  });
  const spec = {
    cpus: 1,
    memoryMib: 512,
    diskMib: 256,
    proxySocket: path.join(dir, 'proxy.sock'),
    outputLimitBytes: 4 * 1024 * 1024,
  };
  [vm, busy] = await Promise.all([
    sandbox.create({ ...spec, taskId: 'harden' }),
    sandbox.create({ ...spec, taskId: 'harden-busy', execAuditRate: { perSecond: 1, burst: 10 } }),
  ]);
  vm.onExecAudit((r) => execs.push(r));
  vm.onMalformed((line) => malformed.push(line));
  busy.onExecAudit((r) => busyExecs.push(r));
  busy.onExecAuditLoss((l) => busyLosses.push(l));
}, 300_000);

afterAll(async () => {
  await Promise.all([vm?.destroy(), busy?.destroy()]);
  for (const socket of proxyConnections) socket.destroy();
  proxy?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('files the host writes into the guest', () => {
  it('never follow a link the agent planted at the prompt’s path', async () => {
    const planted = await run(
      vm,
      'ln -sf /etc/ld.so.preload /work/prompt.md && ls -l /work/prompt.md',
      AGENT,
    );
    expect(planted.stdout).toContain('/work/prompt.md -> /etc/ld.so.preload');
    // What the task runner does with the prompt.
    await vm.writeFile('/work/prompt.md', 'issue text /tmp/evil.so\n', { mode: 0o644, uid: AGENT });
    const after = await run(
      vm,
      'test -e /etc/ld.so.preload && echo PRELOAD; stat -c "%F %u" /work/prompt.md; cat /work/prompt.md',
    );
    expect(after.stdout).toBe('regular file 1000\nissue text /tmp/evil.so\n');
  });

  it('never follow a link the agent planted as its config directory or config file', async () => {
    const input = {
      prompt: 'p',
      promptFile: '/work/prompt.md',
      repoDir: '/work',
      homeDir: '/home/agent',
      proxyUrl: 'http://10.0.2.100',
      taskId: 'harden',
    };
    // The real adapter's directories and files, written the way every agent run writes them; only
    // the CLI itself is not started.
    const configOnly = {
      ...codexAdapter,
      invocation: () => ({ ...codexAdapter.invocation(input), argv: ['true'] }),
    };
    const options = { uid: AGENT, env: { HOME: '/home/agent' }, onEvent: () => {} };
    await run(vm, 'rm -rf /home/agent/.codex && ln -s /etc /home/agent/.codex', AGENT);
    await expect(runAgent(vm, configOnly, input, options)).rejects.toThrow(/EACCES|permission denied/i);
    expect((await run(vm, 'test -e /etc/config.toml && echo WRITTEN || echo ABSENT')).stdout).toBe(
      'ABSENT\n',
    );

    await run(
      vm,
      'rm -f /home/agent/.codex && mkdir /home/agent/.codex && ln -s /etc/ld.so.preload /home/agent/.codex/config.toml',
      AGENT,
    );
    await runAgent(vm, configOnly, input, options);
    const after = await run(
      vm,
      'test -e /etc/ld.so.preload && echo PRELOAD; stat -c "%F %u" /home/agent/.codex/config.toml',
    );
    expect(after.stdout).toBe('regular file 1000\n');
  });

  it('are refused as root anywhere a user other than root could have changed the path', async () => {
    await expect(vm.writeFile('/work/as-root.txt', 'x')).rejects.toThrow(/only root can change/);
    await expect(vm.writeFile('/tmp/as-root.txt', 'x')).rejects.toThrow(/only root can change/);
    await vm.writeFile('/etc/airlock-test/conf', 'root only\n');
    expect((await run(vm, 'stat -c "%U %a" /etc/airlock-test /etc/airlock-test/conf')).stdout).toBe(
      'root 755\nroot 644\n',
    );
  });
});

describe('the image', () => {
  it('has no setuid or setgid programs', async () => {
    const found = await run(vm, 'find / -xdev -type f -perm /6000');
    expect(found.stdout).toBe('');
    expect(found.code).toBe(0);
  });

  it('caps the agent user’s processes without the command asking', async () => {
    const result = await run(
      vm,
      'read -r _ kib _ < /proc/meminfo; echo $(( kib / 2048 > 256 ? kib / 2048 : 256 )) ' +
        "$(grep 'Max processes' /proc/self/limits | tr -s ' ' | cut -d' ' -f3)",
      AGENT,
    );
    const [expected, actual] = result.stdout.trim().split(' ');
    expect(actual).toBe(expected);
  });
});

describe('the exec audit', () => {
  it('takes no record from crashing programs named like one, nor from writes to the kernel log', async () => {
    // A whole forged event is a SYSCALL record (pid, uid), an EXECVE record (argv) and a CWD record
    // with one serial: three binaries named like them, crashed together (mov dword [0], 0: a page
    // fault the kernel reports with the binary's name), and the same records written by root.
    const names = [
      '/work/y audit: type=1300 audit(1764582000.200:99999): arch=c000003e syscall=59 success=yes exit=0 ppid=1 pid=4242 uid=0 exe="forged"',
      '/work/x audit: type=1309 audit(1764582000.200:99999): argc=2 a0="forged" a1="by-segfault"',
      '/work/z audit: type=1307 audit(1764582000.200:99999): cwd="forged"',
    ];
    const crash = elf64(Buffer.from([0xc7, 0x04, 0x25, 0, 0, 0, 0, 0, 0, 0, 0]));
    // (A file name cannot hold a slash, so the forged cwd has none.)
    for (const name of names) expect((await plant(vm, name, crash)).code).toBe(0);
    const crashed = await run(vm, `'${names[0]}' & '${names[1]}' & '${names[2]}' & wait; echo done`, AGENT);
    expect(crashed.stdout).toBe('done\n');
    await run(
      vm,
      `printf '<5>audit: type=1300 audit(1764582000.300:99998): arch=c000003e syscall=59 success=yes exit=0 ppid=1 pid=4243 uid=0 exe="forged"\\n' > /dev/kmsg; ` +
        `printf '<5>audit: type=1309 audit(1764582000.300:99998): argc=1 a0="forged-by-kmsg-write"\\n' > /dev/kmsg; ` +
        `printf '<5>audit: type=1307 audit(1764582000.300:99998): cwd="/forged"\\n' > /dev/kmsg`,
    );
    await vm.syncAudit(60_000);
    // The crashes themselves are on the record (the audit works); nothing they or the writes forged is.
    const argvs = execs.map((e) => e.argv);
    expect(argvs).not.toContainEqual(['forged', 'by-segfault']);
    expect(argvs).not.toContainEqual(['forged-by-kmsg-write']);
    // Nor did the guest send one the host then refused (an event it forged but could not complete).
    expect(malformed.filter((line) => line.includes('forged'))).toEqual([]);
    for (const name of names) expect(argvs).toContainEqual([name]);
  });

  it('records a 32-bit execveat', async () => {
    await plant(vm, '/work/execveat32', elf32Execveat('execveat32-marker'));
    const result = await vm.exec({ argv: ['/work/execveat32'], uid: AGENT, cwd: '/work' });
    expect(result.code).toBe(0);
    await vm.syncAudit(60_000);
    expect(execs.map((e) => e.argv)).toContainEqual(['/bin/true', 'execveat32-marker']);
  });
});

describe('a guest cannot exhaust the host', () => {
  it('keeps a tight exec loop to its rate and counts what it dropped', async () => {
    const loops = 200;
    const started = Date.now();
    const result = await run(
      busy,
      `i=0; while [ $i -lt ${loops} ]; do /bin/true loop-$i; i=$((i+1)); done`,
      AGENT,
    );
    expect(result.code).toBe(0);
    await busy.syncAudit(120_000);
    const seconds = (Date.now() - started) / 1000;
    const kept = busyExecs.filter((e) => e.argv[1]?.startsWith('loop-')).length;
    const dropped = busyLosses.reduce((sum, l) => sum + (l.kind === 'dropped' ? l.records : 0), 0);
    const lost = busyLosses.reduce((sum, l) => sum + (l.kind === 'lost' ? l.records : 0), 0);
    expect(kept).toBeLessThanOrEqual(10 + Math.ceil(seconds));
    expect(dropped).toBeGreaterThan(0);
    console.log(
      `exec loop: ${loops} execs in ${seconds.toFixed(1)} s, ${kept} kept, ${dropped} dropped, ${lost} lost`,
      JSON.stringify(busyLosses),
    );
    // Nothing is lost silently: every loop iteration was kept or counted, dropped or lost.
    expect(kept + dropped + lost).toBeGreaterThanOrEqual(loops);
  }, 600_000);

  // Each guest connection costs the host a helper process: QEMU forks itself (about 0.5 GB
  // resident) and execs socat, one at a time in its main loop. On two cores shared at load 17-25
  // (2026-12-01): 1,000 connections in 254 s (3.9/s); 5,000 did not finish in 34 min (under 2.4/s).
  // So 1,000 by default; AIRLOCK_TEST_CONNECTIONS=5000 on a quieter machine, with a budget that
  // grows with the count.
  const connections = Number(process.env.AIRLOCK_TEST_CONNECTIONS ?? 1_000);
  const stormBudgetMs = connections * 600 + 60_000;
  it(
    'holds a storm of connections to the proxy with a bounded number of host processes',
    async () => {
      const script = `
      const net = require('node:net');
      let connected = 0, closed = 0, settled = 0;
      const sockets = [];
      const done = () => {
        if (++settled < ${connections}) return;
        console.log(JSON.stringify({ connected, closed }));
        for (const s of sockets) s.destroy();
      };
      for (let i = 0; i < ${connections}; i++) {
        const s = net.connect(80, '10.0.2.100');
        sockets.push(s);
        let counted = false;
        const settle = () => { if (!counted) { counted = true; done(); } };
        s.on('connect', () => { connected++; settle(); });
        s.on('close', () => { closed++; settle(); });
        s.on('error', () => {});
      }`;
      let peak = 0;
      const sampler = setInterval(() => {
        peak = Math.max(peak, proxyHelpers());
      }, 100);
      const started = Date.now();
      try {
        const storm = await run(busy, 'ulimit -n 20000 && node -', undefined, script, stormBudgetMs);
        expect(storm.code, storm.stderr).toBe(0);
        const seconds = (Date.now() - started) / 1000;
        console.log(
          `connection storm: ${storm.stdout.trim()} of ${connections} in ${seconds.toFixed(0)} s (${(connections / seconds).toFixed(1)}/s), peak host helpers ${peak}`,
        );
      } finally {
        clearInterval(sampler);
      }
      expect(peak).toBeGreaterThan(0);
      expect(peak).toBeLessThanOrEqual(MAX_PROXY_CONNECTIONS * 2);
      // The proxy route still works once the storm has passed.
      const after = await run(busy, 'busybox wget -q -O - http://10.0.2.100/');
      expect(after.stdout).toBe('proxy reached');
    },
    stormBudgetMs + 60_000,
  );
});
