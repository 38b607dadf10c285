import { describe, expect, it } from 'vitest';
import { IngressGate } from '../../src/github/ingress-gate.ts';
import { ManualTimer } from '../helpers/manual-timer.ts';

/** Starts `gate.yield()` and reports whether it has resolved yet. */
function background(gate: IngressGate) {
  const state = { released: false, done: Promise.resolve() };
  state.done = gate.yield().then(() => {
    state.released = true;
  });
  return state;
}

/** Lets the gate take its next step: resolves when it sleeps again or lets the work through. */
async function step(timer: ManualTimer, done: Promise<void>): Promise<void> {
  await Promise.race([timer.sleeping(), done]);
}

describe('IngressGate', () => {
  it('lets background work through at once when no webhook is being handled', async () => {
    const timer = new ManualTimer();
    const gate = new IngressGate({ quietMs: 5, maxWaitMs: 1000, timer });
    const work = background(gate);
    await step(timer, work.done);
    expect(work.released).toBe(true);
    expect(timer.now()).toBe(0);
  });

  it('holds background work while a webhook is in flight, and releases it a quiet gap after the answer', async () => {
    const timer = new ManualTimer();
    const gate = new IngressGate({ quietMs: 5, maxWaitMs: 5000, timer });
    const answered = gate.arrive();
    const work = background(gate);
    for (let waited = 0; waited < 1000; waited += 5) {
      await step(timer, work.done);
      expect(work.released).toBe(false);
      timer.advance(5);
    }
    answered();
    await step(timer, work.done);
    timer.advance(4);
    await step(timer, work.done);
    expect(work.released).toBe(false);
    timer.advance(1);
    await work.done;
    expect(timer.now()).toBe(1005);
  });

  it('never holds background work longer than maxWaitMs, however busy', async () => {
    const timer = new ManualTimer();
    const gate = new IngressGate({ quietMs: 5, maxWaitMs: 60, timer });
    gate.arrive(); // never answered
    const work = background(gate);
    while (!work.released) {
      await step(timer, work.done);
      if (!work.released) timer.advance(5);
    }
    expect(timer.now()).toBe(60);
  });
});
