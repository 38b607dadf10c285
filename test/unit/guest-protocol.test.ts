import { describe, expect, it } from 'vitest';
import { failedGuestSetup, parseAgentList } from '../../src/sandbox/microvm-sandbox.ts';

describe('failedGuestSetup', () => {
  it('accepts a guest whose set-up all worked', () => {
    expect(failedGuestSetup({ type: 'ready', setup: { scratch: 0, network: 0, audit: 0 } })).toBeUndefined();
  });

  it('names each part that failed, the exec audit first', () => {
    expect(failedGuestSetup({ type: 'ready', setup: { scratch: 0, network: 2, audit: 1 } })).toBe(
      'the exec-audit rules could not be loaded and locked (audit=1); the network could not be configured (network=2)',
    );
    expect(failedGuestSetup({ type: 'ready', setup: { timedOut: true } })).toBe(
      'it did not finish within 30 s',
    );
    expect(failedGuestSetup({ type: 'ready' })).toMatch(/no set-up results/);
  });
});

describe('parseAgentList', () => {
  it('reads the image manifest agent list, scoped packages included', () => {
    expect(
      parseAgentList('@openai/codex@0.169.0 @anthropic-ai/claude-code@2.1.330 opencode-ai@1.18.33'),
    ).toEqual({
      '@openai/codex': '0.169.0',
      '@anthropic-ai/claude-code': '2.1.330',
      'opencode-ai': '1.18.33',
    });
    expect(parseAgentList(undefined)).toEqual({});
  });
});
