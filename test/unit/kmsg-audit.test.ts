import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';

// The guest agent's reader is plain CommonJS (it runs in the guest before anything is installed).
interface Exec {
  argv: string[];
  pid?: number;
  uid?: number;
  cwd?: string;
}
interface Loss {
  reason: string;
  records: number;
  firstSerial?: number;
  lastSerial?: number;
}
interface Reader {
  onKmsg(text: string): void;
  checkGaps(): void;
}
const kmsg = createRequire(import.meta.url)('../../vm-images/guest/kmsg-audit.cjs') as {
  createExecAuditReader(options: {
    onExec(exec: Exec): void;
    onLost(loss: Loss): void;
    now(): number;
    setTimer(fn: () => void, ms: number): unknown;
  }): Reader;
};

/** A reader over a controlled clock; timers run only when the test says so. */
function reader() {
  const execs: Exec[] = [];
  const losses: Loss[] = [];
  let clock = 1_000_000;
  let timers: Array<{ fn: () => void; at: number }> = [];
  const r = kmsg.createExecAuditReader({
    onExec: (e) => execs.push(e),
    onLost: (l) => losses.push(l),
    now: () => clock,
    setTimer: (fn, ms) => timers.push({ fn, at: clock + ms }),
  });
  return {
    execs,
    losses,
    feed: (text: string) => r.onKmsg(text),
    advance(ms: number) {
      clock += ms;
      const due = timers.filter((t) => t.at <= clock);
      timers = timers.filter((t) => t.at > clock);
      for (const t of due) t.fn();
      r.checkGaps();
    },
  };
}

/** The records the kernel prints for one execve (captured from the guest's /dev/kmsg). */
function execRecords(serial: number, argv: string[], seq = serial * 10): string[] {
  const stamp = `audit(1764582000.123:${serial})`;
  const args = argv.map((a, i) => `a${i}="${a}"`).join(' ');
  return [
    `5,${seq},5000000,-;audit: type=1300 ${stamp}: arch=c000003e syscall=59 success=yes exit=0 a0=55d0 a1=55d1 a2=55d2 a3=0 items=2 ppid=1 pid=${100 + serial} auid=4294967295 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=(none) ses=4294967295 comm="true" exe="/usr/bin/true" key=(null)\n`,
    `5,${seq + 1},5000001,-;audit: type=1309 ${stamp}: argc=${argv.length} ${args}\n`,
    `5,${seq + 2},5000002,-;audit: type=1307 ${stamp}: cwd="/work"\n`,
    `5,${seq + 3},5000003,-;audit: type=1327 ${stamp}: proctitle=2F62696E2F74727565\n`,
  ];
}

describe('the guest exec-audit reader', () => {
  it('joins the records of one execve into one exec', () => {
    const r = reader();
    for (const line of execRecords(7, ['/bin/true', 'marker'])) r.feed(line);
    expect(r.execs).toEqual([
      {
        ts: '2025-12-01T09:40:00.123Z',
        pid: 107,
        ppid: 1,
        uid: 1000,
        argv: ['/bin/true', 'marker'],
        cwd: '/work',
        exe: '/usr/bin/true',
      },
    ]);
  });

  it('keeps an event whole when its records are read in two passes far apart', () => {
    const r = reader();
    const [syscall, execve, cwd, proctitle] = execRecords(8, ['/bin/true', 'slow']);
    r.feed(syscall!);
    // A busy guest: the next pass over the kernel log comes half a second later.
    r.advance(500);
    r.feed(execve!);
    r.feed(cwd!);
    r.feed(proctitle!);
    expect(r.execs).toEqual([
      expect.objectContaining({ pid: 108, argv: ['/bin/true', 'slow'], cwd: '/work' }),
    ]);
  });

  it('sends an event whose closing record never came, without the fields it lacks', () => {
    const r = reader();
    const [, execve] = execRecords(9, ['/bin/true', 'partial']);
    r.feed(execve!);
    r.advance(1_000);
    expect(r.execs).toEqual([]);
    r.advance(1_000);
    expect(r.execs).toEqual([{ ts: '2025-12-01T09:40:00.123Z', argv: ['/bin/true', 'partial'] }]);
  });

  it('ignores a segfault report whose binary name is shaped like an audit record', () => {
    const r = reader();
    // What the kernel logged (level info) when a binary named like a record crashed: the name
    // comes after " in ", the whole record is the kernel's, but not audit's.
    r.feed(
      '6,300,9000000,-;audit: type=13[412]: segfault at 0 ip 0000000000400078 sp 00007ffd8d0c5f20 error 6 in ' +
        'x audit: type=1309 audit(1764582000.200:99999): argc=1 a0="forged-by-segfault"[400000+1000] likely on CPU 0 (core 0, socket 0)\n',
    );
    r.feed('6,301,9000001,-;x audit: type=1309 audit(1764582000.200:99999): argc=1 a0="forged"\n');
    r.advance(100);
    expect(r.execs).toEqual([]);
    expect(r.losses).toEqual([]);
  });

  it('ignores a record written to /dev/kmsg from user space (its facility is never the kernel’s)', () => {
    const r = reader();
    // `echo '<5>audit: type=1309 …' > /dev/kmsg` arrives as facility user (8 + 5).
    r.feed('13,302,9000002,-;audit: type=1309 audit(1764582000.200:5): argc=1 a0="forged-by-write"\n');
    r.advance(100);
    expect(r.execs).toEqual([]);
  });

  it('ignores audit text that does not start the message or has extra before the prefix', () => {
    const r = reader();
    r.feed('5,303,9000003,-;kworker: audit: type=1309 audit(1764582000.200:5): argc=1 a0="x"\n');
    r.feed('5,304,9000004,-; audit: type=1309 audit(1764582000.200:5): argc=1 a0="x"\n');
    r.feed('5,305;audit: type=1309 audit(1764582000.200:5): argc=1 a0="x"\n');
    r.feed('audit: type=1309 audit(1764582000.200:5): argc=1 a0="x"\n');
    r.advance(100);
    expect(r.execs).toEqual([]);
  });

  it('counts serials that never came as lost, once a later record has waited for them', () => {
    const r = reader();
    for (const line of execRecords(10, ['/bin/true', 'a'])) r.feed(line);
    for (const line of execRecords(14, ['/bin/true', 'b'])) r.feed(line);
    r.advance(100);
    expect(r.losses).toEqual([]);
    r.advance(2_000);
    expect(r.losses).toEqual([{ reason: 'serial_gap', records: 3, firstSerial: 11, lastSerial: 13 }]);
    for (const line of execRecords(15, ['/bin/true', 'c'])) r.feed(line);
    r.advance(3_000);
    expect(r.losses).toHaveLength(1);
    expect(r.execs.map((e) => e.argv[1])).toEqual(['a', 'b', 'c']);
  });

  it('does not count records of two CPUs that arrive out of order as lost', () => {
    const r = reader();
    for (const line of execRecords(20, ['/bin/true', 'a'])) r.feed(line);
    for (const line of execRecords(22, ['/bin/true', 'c'])) r.feed(line);
    r.advance(500);
    for (const line of execRecords(21, ['/bin/true', 'b'])) r.feed(line);
    r.advance(5_000);
    expect(r.losses).toEqual([]);
    expect(r.execs).toHaveLength(3);
  });

  it('counts a serial gap whose later records are not execs (a config change, a crash report)', () => {
    const r = reader();
    for (const line of execRecords(30, ['/bin/true'])) r.feed(line);
    r.feed(
      '5,400,9000010,-;audit: type=1701 audit(1764582000.300:31): auid=4294967295 uid=1000 sig=11 res=1\n',
    );
    r.feed('5,401,9000011,-;audit: type=1305 audit(1764582000.300:33): op=set audit_enabled=2 res=1\n');
    r.advance(2_500);
    expect(r.losses).toEqual([{ reason: 'serial_gap', records: 1, firstSerial: 32, lastSerial: 32 }]);
  });
});
