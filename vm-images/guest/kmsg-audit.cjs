// The guest agent's exec-audit reader: turns kernel audit records from /dev/kmsg into one
// `exec_audit` message per executed process, and reports records that were lost.
// Only genuine kernel records count. Unprivileged text reaches the kernel log too (the segfault
// report carries the crashing binary's name), so a record is accepted only when the kmsg header
// says the kernel printed it at audit's own level (facility 0, notice) and the message starts
// with audit's exact prefix. Lost records show as gaps in the audit serial numbers. (The kernel's
// own audit_lost counter is no measure here: with no audit daemon, every record past its hold
// queue is counted lost although it was printed.)
// Dependency-free CommonJS like the guest agent, and free of side effects on load, so host unit
// tests require it directly.
'use strict';

/** The level audit prints records at when no daemon listens (notice), from the kernel facility (0). */
const AUDIT_LEVEL = 5;
/** How long a missing serial may trail a later one (records of two CPUs interleave). */
const GAP_GRACE_MS = 2_000;
/** Later serials held while waiting for a missing one; beyond this the missing ones are lost. */
const MAX_AHEAD = 4_096;
/**
 * How long the records of one event are waited for when its closing record (PROCTITLE, which the
 * kernel prints last for every syscall event) does not come. Long, because a busy guest may read
 * an event's records in two passes far apart; sending early would split the event.
 */
const EVENT_WAIT_MS = 2_000;

const AUDIT_RECORD = /^audit: type=(\d{4}) audit\((\d+)\.(\d{3}):(\d+)\): (.*)$/s;

/**
 * One /dev/kmsg record (`PRI,SEQ,USEC,FLAGS[,…];MESSAGE` then optional ` KEY=value` lines) as
 * facility, level, sequence number and message; null when it is not shaped like one.
 */
function parseKmsgRecord(text) {
  const semicolon = text.indexOf(';');
  if (semicolon < 0) return null;
  const header = text.slice(0, semicolon).split(',');
  if (header.length < 4 || !/^\d+$/.test(header[0]) || !/^\d+$/.test(header[1])) return null;
  const priority = Number(header[0]);
  const end = text.indexOf('\n', semicolon);
  return {
    facility: priority >> 3,
    level: priority & 7,
    seq: Number(header[1]),
    message: text.slice(semicolon + 1, end < 0 ? text.length : end),
  };
}

/** A genuine kernel audit record (type, timestamp, serial, body) from a kmsg record; else null. */
function auditRecordOf(record) {
  if (record?.facility !== 0 || record.level !== AUDIT_LEVEL) return null;
  const m = AUDIT_RECORD.exec(record.message);
  if (!m) return null;
  const [, type, secs, millis, serial, body] = m;
  return {
    type: Number(type),
    ts: new Date(Number(secs) * 1000 + Number(millis)).toISOString(),
    serial: Number(serial),
    body,
  };
}

/**
 * Tracks audit serial numbers (one per event, rising by one) and finds the ones that never
 * came. Records of different CPUs may arrive slightly out of order, so a serial counts as lost
 * only once a later one has waited GAP_GRACE_MS for it.
 */
class SerialGaps {
  constructor() {
    this.next = null;
    /** serial → when it was seen, for serials seen while an earlier one is missing. */
    this.ahead = new Map();
  }

  see(serial, nowMs) {
    if (this.next === null || serial === this.next) {
      this.next = serial + 1;
      this.#advance();
    } else if (serial > this.next && !this.ahead.has(serial)) {
      this.ahead.set(serial, nowMs);
    }
  }

  /** Gaps that are now certain, as `{ first, last, records }` (serials first..last never came). */
  lost(nowMs) {
    const gaps = [];
    while (this.ahead.size) {
      let lowest = Number.POSITIVE_INFINITY;
      for (const serial of this.ahead.keys()) if (serial < lowest) lowest = serial;
      if (nowMs - this.ahead.get(lowest) < GAP_GRACE_MS && this.ahead.size < MAX_AHEAD) break;
      gaps.push({ first: this.next, last: lowest - 1, records: lowest - this.next });
      this.next = lowest;
      this.#advance();
    }
    return gaps;
  }

  #advance() {
    while (this.ahead.has(this.next)) {
      this.ahead.delete(this.next);
      this.next++;
    }
  }
}

/**
 * Joins the SYSCALL (1300), EXECVE (1309) and CWD (1307) records of each event into one exec
 * record, sent when its PROCTITLE (1327) arrives, or EVENT_WAIT_MS after its first record.
 * `onExec(exec)` gets each; `onLost(loss)` each counted loss; `timers` is setTimeout's shape.
 */
function createExecAuditReader({ onExec, onLost, now = Date.now, setTimer = setTimeout }) {
  const pending = new Map();
  const serials = new SerialGaps();

  const flush = (serial) => {
    const event = pending.get(serial);
    pending.delete(serial);
    if (!event?.argv) return;
    // A field whose record never came is left out, not sent as null.
    onExec({
      ts: event.ts,
      pid: event.pid,
      ppid: event.ppid,
      uid: event.uid,
      argv: event.argv,
      cwd: event.cwd,
      exe: event.exe,
    });
  };

  /** Feeds one /dev/kmsg record as read. */
  function onKmsg(text) {
    const audit = auditRecordOf(parseKmsgRecord(text));
    if (!audit) return;
    serials.see(audit.serial, now());
    let event = pending.get(audit.serial);
    if (!event) {
      event = { ts: audit.ts };
      pending.set(audit.serial, event);
      setTimer(() => flush(audit.serial), EVENT_WAIT_MS);
    }
    const fields = parseFields(audit.body);
    if (audit.type === 1300) {
      event.pid = Number(fields.pid);
      event.ppid = Number(fields.ppid);
      event.uid = Number(fields.uid);
      event.exe = decodeValue(fields.exe ?? '');
    } else if (audit.type === 1309) {
      const argc = Number(fields.argc);
      const argv = [];
      for (let i = 0; i < argc; i++) argv.push(decodeValue(fields[`a${i}`] ?? joinParts(fields, i)));
      event.argv = argv;
    } else if (audit.type === 1307) {
      event.cwd = decodeValue(fields.cwd ?? '');
    } else if (audit.type === 1327) {
      flush(audit.serial);
    }
  }

  /** Reports serial gaps that are now certain; call after each batch of reads. */
  function checkGaps() {
    for (const gap of serials.lost(now())) {
      onLost({ reason: 'serial_gap', records: gap.records, firstSerial: gap.first, lastSerial: gap.last });
    }
  }

  return { onKmsg, checkGaps };
}

function joinParts(fields, i) {
  let value = '';
  for (let j = 0; fields[`a${i}[${j}]`] !== undefined; j++) value += decodeValue(fields[`a${i}[${j}]`]);
  return value;
}

function parseFields(body) {
  const fields = {};
  for (const m of body.matchAll(/([\w[\]]+)=("(?:[^"]*)"|\S+)/g)) fields[m[1]] = m[2];
  return fields;
}

// Audit quotes plain values and hex-encodes any with spaces, quotes or control characters.
function decodeValue(raw) {
  if (raw.startsWith('"')) return raw.slice(1, -1);
  if (/^([0-9A-F]{2})+$/.test(raw)) return Buffer.from(raw, 'hex').toString('utf8');
  return raw;
}

module.exports = { parseKmsgRecord, auditRecordOf, SerialGaps, createExecAuditReader };
