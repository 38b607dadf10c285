import { randomBytes } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { MicroVm } from '../../src/sandbox/microvm-sandbox.ts';
import type { Sandbox } from '../../src/sandbox/sandbox.ts';
import { inspectBeforeDestroy } from '../helpers/agent-files-sandbox.ts';
import { type E2eWorld, startE2eWorld } from '../helpers/e2e-world.ts';
import {
  type FixedAnthropicUpstream,
  startFixedAnthropicUpstream,
} from '../helpers/fixed-anthropic-upstream.ts';

// The security claim "no credential ever enters the VM", checked where it could fail: a real task
// clones and pushes with a minted token and calls a model with a configured key, both through the
// proxy; just before the VM is destroyed, every process's environment and command line, the kernel
// command line, the serial log, a dump of guest RAM taken through QEMU's monitor, and both disks are
// searched for the token and the key. Canaries planted in each place prove each search can find.

const MODEL_KEY = `sk-ant-airlock-${randomBytes(16).toString('hex')}`;
const ENV_CANARY = `env-canary-${randomBytes(8).toString('hex')}`;
const DISK_CANARY = `disk-canary-${randomBytes(8).toString('hex')}`;
const SERIAL_CANARY = `serial-canary-${randomBytes(8).toString('hex')}`;

const AGENT_SCRIPT = `#!/bin/bash
set -e
# Positive controls: a long-lived process with a canary in its environment, a canary on disk.
AIRLOCK_CANARY=${ENV_CANARY} setsid sleep 3600 </dev/null >/dev/null 2>&1 &
echo "${DISK_CANARY}" > canary.txt
# A model call through the proxy with a placeholder key; the proxy puts the real one on upstream.
node -e '
fetch("http://10.0.2.100/anthropic/v1/messages", {
  method: "POST",
  headers: { "content-type": "application/json", "x-api-key": "placeholder", "anthropic-version": "2023-06-01" },
  body: JSON.stringify({ model: "claude-test", max_tokens: 16, messages: [{ role: "user", content: "hi" }] }),
}).then(async (r) => console.log("model answered", r.status, await r.text()));
'
echo "changed" > greeting.txt
`;

interface Scan {
  processes: string;
  cmdline: string;
  console: Buffer;
  memory: Buffer;
  overlay: Buffer;
  scratch: Buffer;
}

let world: E2eWorld;
let upstream: FixedAnthropicUpstream;
let scan: Scan | undefined;
const dumpFile = path.join(tmpdir(), `airlock-ram-${randomBytes(4).toString('hex')}.core`);

async function scanVm(vm: MicroVm): Promise<Scan> {
  const run = async (argv: string[], env: Record<string, string> = {}) => {
    let out = '';
    const result = await vm.exec({ argv, env }, (_stream, data) => {
      out += data;
    });
    if (result.code !== 0) throw new Error(`${argv.join(' ')} exited ${result.code}: ${out}`);
    return out;
  };
  // The secrets are never sent in: every search happens on the host, over what is read out.
  const processes = await run([
    '/bin/sh',
    '-c',
    'for p in /proc/[0-9]*; do cat $p/environ $p/cmdline 2>/dev/null | tr "\\0" " "; echo; done',
  ]);
  const cmdline = await run(['/bin/cat', '/proc/cmdline']);
  await run(['/bin/sh', '-c', 'echo "$C" > /dev/ttyS0'], { C: SERIAL_CANARY });
  await run(['/bin/sync']);
  await vm.dumpGuestMemory(dumpFile);
  const [console, memory, overlay, scratch] = await Promise.all([
    readFile(vm.files.consoleLog),
    readFile(dumpFile),
    readFile(vm.files.overlay),
    readFile(vm.files.scratch),
  ]);
  await rm(dumpFile, { force: true });
  return { processes, cmdline, console, memory, overlay, scratch };
}

/** The real sandbox, whose VMs are scanned just before they are destroyed. */
function scanningSandbox(real: Sandbox): Sandbox {
  return inspectBeforeDestroy(real, async (vm) => {
    scan = await scanVm(vm).catch((error) => {
      throw new Error(`scan failed: ${(error as Error).message}`);
    });
  });
}

/** Every form a secret could take on the wire or in memory. */
function forms(secret: string): Buffer[] {
  return [
    Buffer.from(secret),
    Buffer.from(secret, 'utf16le'),
    Buffer.from(Buffer.from(`x-access-token:${secret}`).toString('base64')),
  ];
}

function contains(haystack: Buffer | string, secret: string): boolean {
  const buffer = typeof haystack === 'string' ? Buffer.from(haystack) : haystack;
  return forms(secret).some((form) => buffer.includes(form));
}

beforeAll(async () => {
  upstream = await startFixedAnthropicUpstream({ input_tokens: 3, output_tokens: 1 });
  world = await startE2eWorld({
    files: {
      'greeting.txt': 'Hello\n',
      'scripts/agent.sh': AGENT_SCRIPT,
      '.github/airlock.yml':
        'agent: script\nscript: scripts/agent.sh\ntimeout_minutes: 20\nlimits:\n  cpus: 1\n  memory_mib: 512\n  disk_mib: 1024\n',
    },
    models: {
      anthropic: { url: upstream.url, apiKey: MODEL_KEY },
    },
    wrapSandbox: scanningSandbox,
  });
}, 120_000);

afterAll(async () => {
  await world?.close();
  upstream?.close();
  await rm(dumpFile, { force: true });
});

it('keeps the task token and the model key out of the VM: environments, command lines, serial log, RAM and disks', async () => {
  const task = await world.labelIssue('Change the greeting', 'Please change the greeting.');
  expect(task.reason ?? '').toBe('');
  expect(task.state).toBe('succeeded');
  expect(scan, 'the VM was scanned before it was destroyed').toBeDefined();
  const found = scan!;

  // The credentials were in play: the token pushed the branch, the key reached the model upstream.
  const push = world.gh.state.pushes.find((p) => p.ref === `refs/heads/${task.branch}`);
  expect(push).toBeDefined();
  const token = push!.token;
  expect(upstream.keys).toEqual([MODEL_KEY]);

  // Each search finds what was planted where it looks.
  expect(found.processes).toContain(ENV_CANARY);
  expect(contains(found.memory, ENV_CANARY)).toBe(true);
  expect(contains(found.scratch, DISK_CANARY)).toBe(true);
  expect(contains(found.console, SERIAL_CANARY)).toBe(true);
  expect(found.memory.length).toBeGreaterThan(256 * 1024 * 1024);

  for (const [name, secret] of [
    ['task token', token],
    ['model key', MODEL_KEY],
  ] as const) {
    expect(contains(found.processes, secret), `${name} in a process environment or command line`).toBe(false);
    expect(contains(found.cmdline, secret), `${name} on the kernel command line`).toBe(false);
    expect(contains(found.console, secret), `${name} in the serial log`).toBe(false);
    expect(contains(found.memory, secret), `${name} in guest RAM`).toBe(false);
    expect(contains(found.overlay, secret), `${name} on the root overlay`).toBe(false);
    expect(contains(found.scratch, secret), `${name} on the scratch disk`).toBe(false);
  }

  // After the task the token is revoked: the emulator refuses it.
  const answer = await fetch(`${world.gh.apiUrl}/repos/acme/widgets`, {
    headers: { authorization: `token ${token}` },
  });
  expect(answer.status).toBe(401);
}, 900_000);
