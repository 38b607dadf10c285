import { describe, expect, it } from 'vitest';
import { FLUSH, pktLine, readReceivePackCommands, refusedPushResponse } from '../../src/proxy/pkt-line.ts';
import { refUpdateAllowed, taskBranchRef } from '../../src/proxy/ref-update-policy.ts';

const A = 'a'.repeat(40);
const B = 'b'.repeat(40);
const ZERO = '0'.repeat(40);

const request = Buffer.concat([
  pktLine(`${A} ${B} refs/heads/airlock/t1\0report-status side-band-64k agent=git/2.39\n`),
  pktLine(`${ZERO} ${B} refs/tags/v1\n`),
  FLUSH,
  Buffer.from('PACK....'),
]);

describe('receive-pack command list', () => {
  it('reads updates and capabilities up to the flush, at any chunk boundary', () => {
    const full = readReceivePackCommands(request);
    expect(full).toEqual({
      updates: [
        { oldOid: A, newOid: B, ref: 'refs/heads/airlock/t1' },
        { oldOid: ZERO, newOid: B, ref: 'refs/tags/v1' },
      ],
      capabilities: ['report-status', 'side-band-64k', 'agent=git/2.39'],
      length: request.length - 8,
    });
    for (let cut = 0; cut < full!.length; cut++) {
      expect(readReceivePackCommands(request.subarray(0, cut))).toBeUndefined();
    }
  });

  it('skips shallow lines and reads an empty (probe) request', () => {
    const shallow = Buffer.concat([
      pktLine(`shallow ${A}\n`),
      pktLine(`${A} ${B} refs/heads/x\0report-status\n`),
      FLUSH,
    ]);
    expect(readReceivePackCommands(shallow)?.updates).toHaveLength(1);
    expect(readReceivePackCommands(FLUSH)).toEqual({ updates: [], capabilities: [], length: 4 });
  });

  it('refuses what is not a plain list of ref updates', () => {
    expect(() => readReceivePackCommands(Buffer.from('zzzz'))).toThrow(/malformed/);
    expect(() =>
      readReceivePackCommands(Buffer.concat([pktLine('push-cert\0report-status\n'), FLUSH])),
    ).toThrow();
    expect(() => readReceivePackCommands(Buffer.concat([pktLine(`${A} ${B}\n`), FLUSH]))).toThrow();
    expect(() => readReceivePackCommands(Buffer.from('0001'))).toThrow();
  });

  it('answers a refusal in the form the client negotiated', () => {
    const reasons = new Map([['refs/heads/main', 'no']]);
    const updates = [{ oldOid: A, newOid: B, ref: 'refs/heads/main' }];
    const plain = refusedPushResponse(
      { updates, capabilities: ['report-status'] },
      reasons,
      'msg',
    ).toString();
    expect(plain).toBe('000eunpack ok\n001ang refs/heads/main no\n0000');
    const banded = refusedPushResponse(
      { updates, capabilities: ['report-status', 'side-band-64k'] },
      reasons,
      'msg',
    );
    expect(banded.subarray(4, 5)[0]).toBe(2);
    expect(banded.toString('latin1')).toContain('\x01000eunpack ok\n');
    expect(refusedPushResponse({ updates, capabilities: [] }, reasons, 'msg').toString()).toBe('000bERR msg');
  });
});

describe('refUpdateAllowed', () => {
  const own = 'airlock/t1';
  it('allows creating and moving (even forcing) the task branch only', () => {
    expect(refUpdateAllowed({ oldOid: ZERO, newOid: B, ref: 'refs/heads/airlock/t1' }, own)).toEqual({
      allowed: true,
    });
    expect(refUpdateAllowed({ oldOid: A, newOid: B, ref: 'refs/heads/airlock/t1' }, own)).toEqual({
      allowed: true,
    });
    for (const ref of [
      'refs/heads/main',
      'refs/heads/airlock/t2',
      'refs/heads/airlock/t1/x',
      'refs/tags/v1',
      'refs/notes/x',
    ]) {
      expect(refUpdateAllowed({ oldOid: A, newOid: B, ref }, own).allowed, ref).toBe(false);
    }
    expect(refUpdateAllowed({ oldOid: A, newOid: ZERO, ref: 'refs/heads/airlock/t1' }, own)).toMatchObject({
      allowed: false,
      reason: expect.stringContaining('deleting'),
    });
  });

  it('requires task branches under refs/heads/airlock/', () => {
    expect(taskBranchRef('airlock/t1')).toBe('refs/heads/airlock/t1');
    expect(() => taskBranchRef('main')).toThrow(/must be under/);
    expect(() => taskBranchRef('airlock/')).toThrow();
  });
});
