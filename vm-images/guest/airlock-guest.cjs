// airlock's guest agent: speaks JSON lines with the host over the virtio serial port
// `airlock.ctl`. It runs commands with exactly the environment the host sends, streams their
// output, reads and writes task files, and reports every process the kernel saw executed.
// Dependency-free on purpose: it runs on the image's Node before anything else is installed.
// CommonJS, not an ES module: under TCG in a fresh VM, Node's ES module loader alone costs about
// 100 ms of the boot.
'use strict';
const { spawn, spawnSync } = require('node:child_process');
const {
  closeSync,
  constants,
  createReadStream,
  createWriteStream,
  fchmodSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} = require('node:fs');
const { dirname } = require('node:path');
const { createExecAuditReader } = require('./kmsg-audit.cjs');

const MAX_CHUNK = 64 * 1024;
const MAX_FILE = 64 * 1024 * 1024;
/**
 * How long an exec's output is still read after its main process exited. A command is done when
 * its main process exits: a background process it left holding the output pipes (`cmd &`, a dev
 * server, a watcher) must not keep it running. Within the grace, output already written drains.
 */
const EXIT_OUTPUT_GRACE_MS = 500;
/** Rounds of stop-and-rescan before a user's processes are killed (a fork bomb converges in a few). */
const MAX_STOP_ROUNDS = 200;
/** Kernel log records read in one go before the event loop gets a turn. */
const KMSG_BATCH = 512;
const DEFAULT_ENV = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  HOME: '/root',
  LANG: 'C.UTF-8',
};

const port = findPort('airlock.ctl');
const fd = openSync(port, 'r+');
const out = createWriteStream(null, { fd, autoClose: false });
const send = (message) => out.write(`${JSON.stringify(message)}\n`);
const running = new Map();

// The guest agent must outlive any memory hog: the OOM killer picks the task's processes first.
try {
  writeFileSync('/proc/self/oom_score_adj', '-1000');
} catch {}
// guest-init's set-up (clock, scratch disk, network, exec-audit rules) runs while Node starts;
// ready waits for its results, which the host checks before it uses the VM. The kernel keeps exec
// records in its log until they are read, so reading starts after ready, off the boot's path.
async function main() {
  const setup = await waitForSetup('/run/airlock/setup.json', 30_000);
  send({
    type: 'ready',
    bootMs: Math.round(Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 1000),
    kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(),
    guestVersion: 2,
    setup,
  });
  startExecAudit();
  let buffer = '';
  createReadStream(null, { fd, autoClose: false, encoding: 'utf8' }).on('data', (chunk) => {
    buffer += chunk;
    for (let i = buffer.indexOf('\n'); i >= 0; i = buffer.indexOf('\n')) {
      const line = buffer.slice(0, i);
      buffer = buffer.slice(i + 1);
      if (line.trim()) handle(line);
    }
  });
}

async function waitForSetup(file, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return JSON.parse(readFileSync(file, 'utf8'));
    } catch {}
    if (Date.now() > deadline) return { timedOut: true };
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function handle(line) {
  let message;
  try {
    message = JSON.parse(line);
  } catch {
    send({ type: 'error', message: 'host sent a line that is not JSON' });
    return;
  }
  try {
    switch (message.type) {
      case 'exec':
        return exec(message);
      case 'write_file':
        writeTaskFile(
          message.path,
          Buffer.from(message.contentBase64, 'base64'),
          message.mode ?? 0o644,
          message.uid,
        );
        return send({ type: 'ok', id: message.id });
      case 'read_file': {
        const content = readFileSync(message.path);
        if (content.length > MAX_FILE)
          return send({ type: 'error', id: message.id, message: `${message.path} is larger than 64 MiB` });
        return send({ type: 'file', id: message.id, contentBase64: content.toString('base64') });
      }
      case 'signal': {
        const child = running.get(message.id);
        if (child) killGroup(child, message.signal ?? 'SIGKILL');
        return;
      }
      case 'kill_user_processes':
        // Root's processes include this agent and init: only an unprivileged user's are ended.
        if (!Number.isInteger(message.uid) || message.uid <= 0)
          return send({ type: 'error', id: message.id, message: 'kill_user_processes needs a uid above 0' });
        return killUserProcesses(message).catch((error) =>
          send({
            type: 'error',
            id: message.id,
            message: `could not end uid ${message.uid}'s processes: ${error.message}`,
          }),
        );
      case 'sync_audit':
        // The marker's exec record queues behind every earlier one; onLine answers when it arrives.
        auditBarriers.add(message.id);
        spawn('/bin/true', [AUDIT_MARKER, message.id], { stdio: 'ignore' }).on('error', (error) => {
          auditBarriers.delete(message.id);
          send({ type: 'error', id: message.id, message: `audit sync failed: ${error.message}` });
        });
        return;
      case 'resume':
        resume(message);
        return send({ type: 'ok', id: message.id });
      case 'shutdown':
        spawnSync('/bin/sync');
        spawnSync('/bin/busybox', ['poweroff', '-f']);
        return;
      default:
        return send({ type: 'error', id: message.id, message: `unknown request type ${message.type}` });
    }
  } catch (error) {
    send({ type: 'error', id: message.id, message: String(error?.message ?? error) });
  }
}

// A VM restored from a snapshot wakes up with its template's kernel RNG state, clock, hostname and
// machine id, like every other VM restored from it. Before the host runs anything in it: the
// host's fresh entropy is credited to the kernel's input pool and the CRNG reseeded from it at
// once (RNDADDENTROPY, then RNDRESEEDCRNG: without the reseed, two clones could read the same bytes
// until the kernel's next scheduled reseed), the clock is set, and the identity regenerated.
// perl-base (Essential in Debian) makes the ioctls and syscalls Node cannot.
const RESUME_SCRIPT = `
open(my $r, '+<', '/dev/urandom') or die "open /dev/urandom: $!\n";
my $seed = pack('H*', $ARGV[0]);
length($seed) >= 32 or die "seed too short\n";
ioctl($r, 0x40085203, pack('ii', length($seed) * 8, length($seed)) . $seed) or die "RNDADDENTROPY: $!\n";
ioctl($r, 0x5207, 0) or die "RNDRESEEDCRNG: $!\n";
syscall(227, 0, pack('qq', $ARGV[1], $ARGV[2])) == 0 or die "clock_settime: $!\n";
my $name = $ARGV[3];
syscall(170, $name, length($name)) == 0 or die "sethostname: $!\n";
`;

function resume(message) {
  if (!/^[0-9a-f]{64,}$/.test(message.seedHex)) throw new Error('resume needs at least 32 bytes of seed');
  if (!/^[a-z0-9-]{1,63}$/.test(message.hostname)) throw new Error('resume needs a plain host name');
  if (!/^[0-9a-f]{32}$/.test(message.machineId)) throw new Error('resume needs a 32-hex-digit machine id');
  const seconds = Math.floor(message.epochMs / 1000);
  const nanoseconds = (message.epochMs % 1000) * 1_000_000;
  const result = spawnSync(
    '/usr/bin/perl',
    ['-e', RESUME_SCRIPT, message.seedHex, String(seconds), String(nanoseconds), message.hostname],
    { encoding: 'utf8', env: DEFAULT_ENV, timeout: 30_000 },
  );
  if (result.status !== 0)
    throw new Error(
      `could not make this VM unique: ${(result.stderr || result.error?.message || '').trim()}`,
    );
  writeRootFile('/etc/machine-id', Buffer.from(`${message.machineId}\n`), 0o444);
}

// Files the host writes land where task code has run before, as root. A path through a place the
// agent user controls could hold a link it planted (/work/prompt.md -> /etc/ld.so.preload), so:
// - with a uid, the write is done with that user's rights (effective ids, for this synchronous
//   call only): the kernel checks every step of the path as that user, so a link leads only where
//   the user could write anyway; a link in the last step is replaced, never followed;
// - as root, every directory on the way must be one only root can change, and the last step is
//   opened without following a link.
function writeTaskFile(path, content, mode, uid) {
  if (!path.startsWith('/') || path.split('/').some((part) => part === '.' || part === '..'))
    throw new Error(`${path} is not an absolute path without . or .. steps`);
  if (uid === undefined || uid === 0) return writeRootFile(path, content, mode);
  const groups = process.getgroups();
  process.setgroups([]);
  process.setegid(uid);
  process.seteuid(uid);
  try {
    mkdirSync(dirname(path), { recursive: true });
    writeNoFollow(path, content, mode, true);
  } finally {
    process.seteuid(0);
    process.setegid(0);
    process.setgroups(groups);
  }
}

function writeRootFile(path, content, mode) {
  let dir = '';
  for (const part of ['', ...dirname(path).split('/').filter(Boolean)]) {
    dir = `${dir}/${part}`.replace('//', '/');
    try {
      mkdirSync(dir, 0o755);
    } catch (error) {
      if (error.code !== 'EEXIST') throw error;
    }
    const stat = lstatSync(dir);
    if (!stat.isDirectory() || stat.uid !== 0 || (stat.mode & 0o022) !== 0)
      throw new Error(
        `refusing to write ${path} as root: ${dir} is not a directory only root can change (write it as the user who owns it)`,
      );
  }
  writeNoFollow(path, content, mode, false);
}

function writeNoFollow(path, content, mode, replaceLink) {
  const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW;
  let fd;
  try {
    fd = openSync(path, flags, mode);
  } catch (error) {
    // ELOOP: the last step is a symbolic link. The user's own link is removed, not followed.
    if (error.code !== 'ELOOP' || !replaceLink) throw error;
    unlinkSync(path);
    fd = openSync(path, flags | constants.O_EXCL, mode);
  }
  try {
    fchmodSync(fd, mode);
    for (let done = 0; done < content.length; ) done += writeSync(fd, content, done);
  } finally {
    closeSync(fd);
  }
}

function exec(message) {
  const started = Date.now();
  let child;
  try {
    // choom resets the OOM score the agent's own -1000 would otherwise pass on, so a memory hog
    // is what the OOM killer picks.
    child = spawn('/usr/bin/choom', ['-n', '0', '--', ...message.argv], {
      cwd: message.cwd ?? '/',
      env: { ...DEFAULT_ENV, ...message.env },
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(message.uid !== undefined ? { uid: message.uid, gid: message.uid } : {}),
    });
  } catch (error) {
    send({ type: 'stderr', id: message.id, data: `${error.message}\n` });
    send({ type: 'exit', id: message.id, code: 127, signal: null, durationMs: 0 });
    return;
  }
  running.set(message.id, child);
  let timer;
  if (message.timeoutMs) timer = setTimeout(() => killGroup(child, 'SIGKILL'), message.timeoutMs);
  for (const stream of ['stdout', 'stderr']) {
    child[stream].setEncoding('utf8');
    child[stream].on('data', (data) => {
      for (let i = 0; i < data.length; i += MAX_CHUNK)
        send({ type: stream, id: message.id, data: data.slice(i, i + MAX_CHUNK) });
    });
  }
  child.stdin.on('error', () => {});
  child.stdin.end(message.stdin ?? '');
  let spawnError;
  child.on('error', (error) => {
    spawnError = error;
  });
  // Done when the main process exits and its output has drained, or EXIT_OUTPUT_GRACE_MS after
  // it exited if something it left behind still holds the pipes: those are closed on our side.
  let exited;
  let finished = false;
  let grace;
  const finish = (code, signal) => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    clearTimeout(grace);
    running.delete(message.id);
    child.stdout.destroy();
    child.stderr.destroy();
    if (spawnError && code === null)
      send({ type: 'stderr', id: message.id, data: `${spawnError.message}\n` });
    send({
      type: 'exit',
      id: message.id,
      code: spawnError && code === null ? 127 : code,
      signal,
      durationMs: Date.now() - started,
    });
  };
  child.on('exit', (code, signal) => {
    exited = { code, signal };
    // The hop through setImmediate lets one poll for I/O run first: when the guest was starved
    // (a loaded host under TCG), the timer and the last output are ready together, and timers
    // run before I/O in Node's loop; the output must not be cut.
    grace = setTimeout(() => setImmediate(() => finish(code, signal)), EXIT_OUTPUT_GRACE_MS);
  });
  child.on('close', (code, signal) => {
    finish(exited?.code ?? code, exited ? exited.signal : signal);
  });
}

// Ends every process of one user (the agent's, once its main process has exited): each round
// stops what it finds, so nothing it stopped can fork again, and rescans for children forked
// meanwhile; then all are killed at once. Answers with each process killed (pid, argv).
async function killUserProcesses(message) {
  const stopped = new Map();
  for (let round = 0; round < MAX_STOP_ROUNDS; round++) {
    const found = userProcesses(message.uid).filter((p) => !stopped.has(p.pid));
    if (!found.length) break;
    for (const p of found) {
      try {
        process.kill(p.pid, 'SIGSTOP');
        stopped.set(p.pid, p.argv);
      } catch {}
    }
  }
  for (const pid of stopped.keys()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {}
  }
  // SIGKILL is acted on when each process next runs: wait until none of the user's is left.
  const deadline = Date.now() + 5_000;
  let left = userProcesses(message.uid);
  while (left.length && Date.now() < deadline) {
    for (const p of left) {
      try {
        process.kill(p.pid, 'SIGKILL');
        if (!stopped.has(p.pid)) stopped.set(p.pid, p.argv);
      } catch {}
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
    left = userProcesses(message.uid);
  }
  send({
    type: 'killed',
    id: message.id,
    processes: [...stopped].map(([pid, argv]) => ({ pid, argv })),
    survivors: left.map((p) => p.pid),
  });
}

// Live (not zombie) processes whose real or effective user is `uid`, with their command lines.
function userProcesses(uid) {
  const found = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid === process.pid) continue;
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      const state = /^State:\s+(\S)/m.exec(status)?.[1];
      const ids = /^Uid:\s+(\d+)\s+(\d+)/m.exec(status);
      if (!ids || state === 'Z' || state === 'X') continue;
      if (Number(ids[1]) !== uid && Number(ids[2]) !== uid) continue;
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      const argv = cmdline.split('\0').filter((part, i, all) => part || i < all.length - 1);
      found.push({ pid, argv: argv.length ? argv : [/^Name:\s+(.*)$/m.exec(status)?.[1] ?? '?'] });
    } catch {}
  }
  return found;
}

function killGroup(child, signal) {
  try {
    process.kill(-child.pid, signal);
  } catch {
    try {
      child.kill(signal);
    } catch {}
  }
}

function findPort(name) {
  for (const entry of readdirSync('/sys/class/virtio-ports')) {
    try {
      if (readFileSync(`/sys/class/virtio-ports/${entry}/name`, 'utf8').trim() === name)
        return `/dev/${entry}`;
    } catch {}
  }
  throw new Error(`virtio port ${name} not found`);
}

const AUDIT_MARKER = 'airlock-audit-sync';
const auditBarriers = new Set();

// Kernel audit records for execve, from /dev/kmsg (no audit daemon is registered, so the kernel
// prints them); kmsg-audit.cjs accepts only genuine records, joins the records of each event into
// one exec_audit, and counts records that were lost.
function startExecAudit() {
  const reader = createExecAuditReader({
    onExec(exec) {
      send({ type: 'exec_audit', ...exec });
      const [, marker, id] = exec.argv;
      if (marker === AUDIT_MARKER && auditBarriers.delete(id)) send({ type: 'ok', id });
    },
    onLost(loss) {
      send({ type: 'exec_audit_lost', ...loss });
    },
  });
  // One read() of /dev/kmsg returns one record. EPIPE means records were overwritten before we
  // read them (the ring buffer wrapped): the gap in audit serials counts them; keep reading.
  // Non-blocking reads, done synchronously: the boot's backlog (hundreds of records) goes in one
  // pass instead of one thread-pool round trip per record, which under TCG is most of the cost.
  // Node cannot wait for this device to become readable, so new records are polled for: every
  // 5 ms while they keep coming, every 50 ms when the guest is quiet.
  const kmsg = openSync('/dev/kmsg', constants.O_RDONLY | constants.O_NONBLOCK);
  const record = Buffer.alloc(16 * 1024);
  const drain = () => {
    let got = 0;
    while (got < KMSG_BATCH) {
      let bytes;
      try {
        bytes = readSync(kmsg, record, 0, record.length, null);
      } catch (error) {
        if (error.code === 'EAGAIN') break;
        if (error.code === 'EPIPE') {
          send({ type: 'log', message: 'kernel log overrun: some exec records were lost' });
          continue;
        }
        return send({ type: 'log', message: `exec audit stopped: ${error.message}` });
      }
      reader.onKmsg(record.toString('utf8', 0, bytes));
      got++;
    }
    reader.checkGaps();
    setTimeout(drain, got === KMSG_BATCH ? 0 : got > 0 ? 5 : 50);
  };
  drain();
}

main();
