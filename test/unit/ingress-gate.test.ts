import { describe, expect, it } from 'vitest';
import { IngressGate } from '../../src/github/ingress-gate.ts';

describe('IngressGate', () => {
  it('lets background work through at once when no webhook is being handled', async () => {
    const gate = new IngressGate({ quietMs: 5, maxWaitMs: 1000 });
    const t0 = performance.now();
    await gate.yield();
    expect(performance.now() - t0).toBeLessThan(5);
  });

  it('holds background work while a webhook is in flight, and releases it after the answer', async () => {
    const gate = new IngressGate({ quietMs: 5, maxWaitMs: 5000 });
    const answered = gate.arrive();
    let released = false;
    const waiting = gate.yield().then(() => {
      released = true;
    });
    await new Promise((r) => setTimeout(r, 50));
    expect(released).toBe(false);
    answered();
    await waiting;
    expect(released).toBe(true);
  });

  it('never holds background work longer than maxWaitMs, however busy', async () => {
    const gate = new IngressGate({ quietMs: 5, maxWaitMs: 60 });
    gate.arrive(); // never answered
    const t0 = performance.now();
    await gate.yield();
    const waited = performance.now() - t0;
    expect(waited).toBeGreaterThanOrEqual(55);
    expect(waited).toBeLessThan(1000);
  });
});
