import { describe, expect, it } from 'vitest';
import { SandboxError } from '../../src/errors.ts';
import { type VmPlace, VmPlaces } from '../../src/sandbox/vm-places.ts';
import { ManualClock } from '../helpers/manual-clock.ts';

/** The places granted so far, in grant order, for promises that may still be waiting. */
function granted(...takes: Promise<VmPlace>[]) {
  const order: number[] = [];
  const places = new Map<number, VmPlace>();
  for (const [i, take] of takes.entries()) {
    take.then(
      (place) => {
        order.push(i);
        places.set(i, place);
      },
      () => {},
    );
  }
  return { order, places };
}

/** Lets promise callbacks already due run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('VM places', () => {
  it('gives places at once below the limit and makes the next launch wait', async () => {
    const places = new VmPlaces(2);
    const a = await places.take({ what: 'a' });
    const b = await places.take({ what: 'b' });
    expect(a.queuedMs).toBeUndefined();
    expect(b.queuedMs).toBeUndefined();
    let queued = 0;
    const c = places.take({ what: 'c', onQueued: () => queued++ });
    const seen = granted(c);
    await settle();
    expect(queued).toBe(1);
    expect(seen.order).toEqual([]);
    expect(places).toMatchObject({ held: 2, waiting: 1 });
    b.release();
    await settle();
    expect(seen.order).toEqual([0]);
    expect(places).toMatchObject({ held: 2, waiting: 0 });
  });

  it('hands released places on in arrival order, and a later arrival never jumps the queue', async () => {
    const places = new VmPlaces(1);
    const first = await places.take({ what: 'first' });
    const waiting = [places.take({ what: 'w0' }), places.take({ what: 'w1' }), places.take({ what: 'w2' })];
    const seen = granted(...waiting);
    first.release();
    // A place released is already the first waiter's: nothing is free for a newcomer or the pool.
    expect(places.tryTake()).toBeUndefined();
    await settle();
    expect(seen.order).toEqual([0]);
    seen.places.get(0)?.release();
    await settle();
    seen.places.get(1)?.release();
    await settle();
    expect(seen.order).toEqual([0, 1, 2]);
    expect(places).toMatchObject({ held: 1, waiting: 0 });
  });

  it('says how long a launch waited, on the clock it is given', async () => {
    const clock = new ManualClock(0);
    const places = new VmPlaces(1, clock);
    const running = await places.take({ what: 'running' });
    const next = places.take({ what: 'next' });
    clock.advance(2_500);
    running.release();
    expect((await next).queuedMs).toBe(2_500);
  });

  it('counts a place once however often it is released', async () => {
    const places = new VmPlaces(1);
    const a = await places.take({ what: 'a' });
    const seen = granted(places.take({ what: 'b' }), places.take({ what: 'c' }));
    a.release();
    a.release();
    await settle();
    expect(seen.order).toEqual([0]);
    expect(places).toMatchObject({ held: 1, waiting: 1 });
  });

  it('lets the warm pool take only a place nobody waits for', async () => {
    const places = new VmPlaces(2);
    const warm = places.tryTake();
    expect(warm).toBeDefined();
    const task = await places.take({ what: 'task' });
    expect(places.tryTake()).toBeUndefined();
    const build = places.take({ what: 'build' });
    task.release();
    // Released while a build waits: the build's, not the pool's.
    expect(places.tryTake()).toBeUndefined();
    const place = await build;
    place.release();
    warm?.release();
    expect(places.held).toBe(0);
    expect(places.tryTake()).toBeDefined();
  });

  it('takes an aborted launch out of the queue with a SandboxError saying why', async () => {
    const places = new VmPlaces(1);
    const running = await places.take({ what: 'running' });
    const stop = new AbortController();
    const aborted = places.take({ what: 'the VM of task t-1', signal: stop.signal });
    const after = places.take({ what: 'after' });
    stop.abort(new Error('the task was cancelled'));
    const error = await aborted.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SandboxError);
    expect(error).toMatchObject({ code: 'vm_wait_aborted' });
    expect((error as Error).message).toMatch(
      /the VM of task t-1 was not started: stopped \(the task was cancelled\) while it waited for one of the host's 1 VM places/,
    );
    expect(places.waiting).toBe(1);
    running.release();
    // The place goes to the launch still waiting, not to the one that left.
    expect((await after).queuedMs).toBeGreaterThanOrEqual(0);
    expect(places.held).toBe(1);
  });

  it('refuses a launch whose signal has already aborted, even with places free', async () => {
    const places = new VmPlaces(3);
    const stop = new AbortController();
    stop.abort(new Error('airlock is shutting down'));
    await expect(places.take({ what: 'a build VM', signal: stop.signal })).rejects.toMatchObject({
      code: 'vm_wait_aborted',
    });
    expect(places.held).toBe(0);
  });

  it('has no limit when given none, and refuses a limit that is not a positive whole number', () => {
    const places = new VmPlaces(Number.POSITIVE_INFINITY);
    for (let i = 0; i < 100; i++) expect(places.tryTake()).toBeDefined();
    for (const bad of [0, -1, 1.5, Number.NaN])
      expect(() => new VmPlaces(bad)).toThrow(/the VM limit must be a whole number of VMs above 0/);
  });
});
