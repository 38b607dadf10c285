import { describe, expect, it } from 'vitest';
import { revealHidden } from '../../src/github/untrusted-markdown.ts';
import { parseCommand } from '../../src/github/webhook-intent.ts';
import { monthOf, priceFor, usd } from '../../src/spend/spend-ledger.ts';
import { shownDigest } from '../../src/tasks/approval-store.ts';
import { runGateReason, runShown, threadAuthors } from '../../src/tasks/approvals.ts';

const thread = {
  title: 't',
  body: 'b',
  author: 'bob',
  updatedAt: '2026-01-01T00:00:00Z',
  comments: [
    {
      id: 1,
      author: 'alice',
      body: 'x',
      createdAt: '2026-01-01T00:00:00Z',
      updatedAt: '2026-01-01T00:00:00Z',
    },
    {
      id: 2,
      author: 'airlock[bot]',
      body: 'y',
      createdAt: '2026-01-01T00:00:00Z',
      updatedAt: '2026-01-01T00:00:00Z',
    },
    { id: 3, author: 'bob', body: 'z', createdAt: '2026-01-01T00:00:00Z', updatedAt: '2026-01-01T00:00:00Z' },
  ],
};

describe('the run gate', () => {
  it('names every author of the frozen thread once, leaving out airlock itself', () => {
    expect(threadAuthors(thread, 'airlock[bot]')).toEqual(['bob', 'alice']);
    expect(threadAuthors(null, 'airlock[bot]')).toEqual([]);
  });

  it('waits for untrusted authors under untrusted, always under always, never under never', () => {
    expect(runGateReason('untrusted', [])).toBeUndefined();
    expect(runGateReason('untrusted', ['bob'])).toMatch(/written by @bob, without write access/);
    expect(runGateReason('always', [])).toMatch(/before every task runs/);
    expect(runGateReason('never', ['bob'])).toBeUndefined();
  });

  it('digests what is shown, so a changed word changes the digest', () => {
    const a = shownDigest(runShown(thread, 'do it', ['bob']));
    expect(a).toMatch(/^[0-9a-f]{64}$/);
    expect(shownDigest(runShown(thread, 'do it', ['bob']))).toBe(a);
    expect(shownDigest(runShown({ ...thread, body: 'c' }, 'do it', ['bob']))).not.toBe(a);
  });
});

describe('/airlock approve and reject', () => {
  it('are commands alone or with a task id; anything else is an instruction', () => {
    expect(parseCommand('/airlock approve', 'airlock')).toEqual({ command: 'approve', instruction: '' });
    expect(parseCommand('/airlock reject k3v9x2mq7p', 'airlock')).toEqual({
      command: 'reject',
      instruction: 'k3v9x2mq7p',
    });
    expect(parseCommand('/airlock approve this change please', 'airlock')).toMatchObject({ command: 'run' });
    expect(parseCommand('> /airlock approve', 'airlock')).toBeUndefined();
  });
});

describe('hidden characters', () => {
  it('are made visible for approvers', () => {
    expect(revealHidden('a\u200Bb\u{E0041}c\r\nd')).toBe('a⟨U+200B⟩b⟨U+E0041⟩c\nd');
  });
});

describe('prices and months', () => {
  it('uses the longest matching pattern, and none when nothing matches', () => {
    const prices = {
      '*': { input_usd_per_mtok: 1, output_usd_per_mtok: 1 },
      'claude-sonnet-*': { input_usd_per_mtok: 3, output_usd_per_mtok: 15 },
    };
    expect(priceFor(prices, 'claude-sonnet-4-5')?.input_usd_per_mtok).toBe(3);
    expect(priceFor(prices, 'gpt-5')?.input_usd_per_mtok).toBe(1);
    expect(priceFor({ 'gpt-*': prices['*'] }, 'claude')).toBeUndefined();
  });

  it('counts by UTC month and says when the next one starts', () => {
    const { month, next } = monthOf(new Date('2026-12-31T23:59:59Z'));
    expect(month).toBe('2026-12');
    expect(next.toISOString()).toBe('2027-01-01T00:00:00.000Z');
    expect(usd(1.05)).toBe('$1.05');
    expect(usd(0.0042)).toBe('$0.0042');
  });
});
