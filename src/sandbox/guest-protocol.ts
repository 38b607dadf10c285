import { z } from 'zod';

/**
 * The control channel between host and guest: JSON lines over a virtio-console port. The host
 * sends requests; the guest answers with output chunks, exit codes, files and, for every process
 * executed in the VM, an exec-audit record. Anything the guest sends that does not parse is kept
 * as a `malformed` event and never crashes the host.
 */
export const HostMessage = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('exec'),
    id: z.string(),
    argv: z.array(z.string()).min(1),
    cwd: z.string().optional(),
    env: z.record(z.string(), z.string()),
    stdin: z.string().optional(),
    timeoutMs: z.number().int().positive().optional(),
    uid: z.number().int().optional(),
  }),
  z.object({
    type: z.literal('write_file'),
    id: z.string(),
    path: z.string(),
    contentBase64: z.string(),
    mode: z.number().int().optional(),
    // Written with this user's rights, so a link the user planted cannot lead elsewhere.
    uid: z.number().int().optional(),
  }),
  z.object({ type: z.literal('read_file'), id: z.string(), path: z.string() }),
  z.object({ type: z.literal('signal'), id: z.string(), signal: z.string() }),
  // Answered with `ok` once every exec record before it has been sent (an audit barrier).
  z.object({ type: z.literal('sync_audit'), id: z.string() }),
  // Ends every process of one unprivileged user; answered with `killed`.
  z.object({ type: z.literal('kill_user_processes'), id: z.string(), uid: z.number().int().positive() }),
  // Sent once to a VM restored from a snapshot, before anything runs in it: fresh entropy for the
  // kernel (credited, then the CRNG reseeded), the time, a host name and a machine id of its own.
  z.object({
    type: z.literal('resume'),
    id: z.string(),
    seedHex: z.string().regex(/^[0-9a-f]{64,}$/),
    epochMs: z.number().int().positive(),
    hostname: z.string().regex(/^[a-z0-9-]{1,63}$/),
    machineId: z.string().regex(/^[0-9a-f]{32}$/),
  }),
  z.object({ type: z.literal('shutdown') }),
]);
export type HostMessage = z.infer<typeof HostMessage>;

/**
 * The guest's boot-time set-up as guest-init reports it: exit statuses (0 is success) of the
 * scratch disk, network and exec-audit rules, and whether the kernel says the audit rules are
 * locked; or that it did not finish in time.
 */
export const GuestSetup = z.union([
  z.object({ timedOut: z.literal(true) }),
  z.object({
    scratch: z.number().int(),
    network: z.number().int(),
    audit: z.number().int(),
    auditLocked: z.boolean(),
  }),
]);
export type GuestSetup = z.infer<typeof GuestSetup>;

/** The guest agent's first message: booted, and what its set-up did. */
export const GuestReady = z.object({
  type: z.literal('ready'),
  bootMs: z.number(),
  kernel: z.string(),
  guestVersion: z.number().int(),
  setup: GuestSetup,
});
export type GuestReady = z.infer<typeof GuestReady>;

/** A process the guest killed: its pid in the guest and its command line. */
export const GuestProcess = z.object({ pid: z.number().int(), argv: z.array(z.string()) });
export type GuestProcess = z.infer<typeof GuestProcess>;

export const GuestMessage = z.discriminatedUnion('type', [
  GuestReady,
  z.object({ type: z.enum(['stdout', 'stderr']), id: z.string(), data: z.string() }),
  z.object({
    type: z.literal('exit'),
    id: z.string(),
    code: z.number().nullable(),
    signal: z.string().nullable().optional(),
    durationMs: z.number().optional(),
  }),
  z.object({ type: z.literal('file'), id: z.string(), contentBase64: z.string() }),
  z.object({ type: z.literal('ok'), id: z.string() }),
  z.object({
    type: z.literal('killed'),
    id: z.string(),
    processes: z.array(GuestProcess),
    /** Pids still running after the kill (a process stuck in the kernel). */
    survivors: z.array(z.number().int()),
  }),
  z.object({ type: z.literal('error'), id: z.string().optional(), message: z.string() }),
  z
    .object({
      type: z.literal('exec_audit'),
      ts: z.string().optional(),
      pid: z.number().optional(),
      ppid: z.number().optional(),
      argv: z.array(z.string()),
      cwd: z.string().optional(),
      uid: z.number().optional(),
    })
    .passthrough(),
  z.object({ type: z.literal('log'), message: z.string() }).passthrough(),
  // Exec records the guest knows it lost: a gap in the audit serial numbers.
  z.object({
    type: z.literal('exec_audit_lost'),
    reason: z.literal('serial_gap'),
    records: z.number().int().positive(),
    firstSerial: z.number().int().optional(),
    lastSerial: z.number().int().optional(),
  }),
]);
export type GuestMessage = z.infer<typeof GuestMessage>;

/** A guest line that did not parse, kept for the audit record. */
export interface MalformedGuestLine {
  type: 'malformed';
  line: string;
  error: string;
  /** The `type` the line claimed, when it was a JSON object with one (a bad `ready` fails the boot). */
  claimedType?: string;
}

/** Longest line the host accepts from a guest before it cuts the line and records it as malformed. */
export const MAX_GUEST_LINE_BYTES = 1024 * 1024;

/**
 * Splits a byte stream into lines and parses each, never throwing: oversized or invalid lines
 * become `malformed` events.
 */
export class GuestLineParser {
  #buffer = '';
  #dropping = false;

  /** Feeds a chunk; returns the messages it completed. */
  push(chunk: string): Array<GuestMessage | MalformedGuestLine> {
    const out: Array<GuestMessage | MalformedGuestLine> = [];
    this.#buffer += chunk;
    for (;;) {
      const newline = this.#buffer.indexOf('\n');
      if (newline < 0) break;
      const line = this.#buffer.slice(0, newline);
      this.#buffer = this.#buffer.slice(newline + 1);
      if (this.#dropping) {
        this.#dropping = false;
        continue;
      }
      if (line.trim()) out.push(parseGuestLine(line));
    }
    if (this.#buffer.length > MAX_GUEST_LINE_BYTES) {
      out.push({
        type: 'malformed',
        line: `${this.#buffer.slice(0, 200)}…`,
        error: 'line longer than 1 MiB',
      });
      this.#buffer = '';
      this.#dropping = true;
    }
    return out;
  }
}

/** Parses one guest line. */
export function parseGuestLine(line: string): GuestMessage | MalformedGuestLine {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch {
    return { type: 'malformed', line: line.slice(0, 2000), error: 'not JSON' };
  }
  const parsed = GuestMessage.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const claimed = (raw as { type?: unknown } | null)?.type;
    return {
      type: 'malformed',
      line: line.slice(0, 2000),
      error: issue ? `${issue.path.join('.') || 'message'}: ${issue.message}` : 'invalid',
      ...(typeof claimed === 'string' ? { claimedType: claimed } : {}),
    };
  }
  return parsed.data;
}
