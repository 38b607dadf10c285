import { describe, expect, it } from 'vitest';
import { parseGuestLine } from '../../src/sandbox/guest-protocol.ts';
import { failedGuestSetup, parseAgentList } from '../../src/sandbox/microvm-sandbox.ts';

/** A ready line as the guest agent sends it, with `setup` as guest-init writes it. */
const readyLine = (setup: unknown) =>
  JSON.stringify({ type: 'ready', bootMs: 2100, kernel: '6.1.0-57-cloud-amd64', guestVersion: 2, setup });

/** Why the host would refuse a VM that sent this ready line; undefined when it would use it. */
function refusal(line: string): string | undefined {
  const message = parseGuestLine(line);
  if (message.type === 'malformed') return `malformed ${message.claimedType}: ${message.error}`;
  if (message.type !== 'ready') throw new Error(`parsed as ${message.type}`);
  return failedGuestSetup(message);
}

describe("the guest's ready report", () => {
  it('is accepted when every part of the set-up worked and the kernel reports the audit locked', () => {
    expect(refusal(readyLine({ scratch: 0, network: 0, audit: 0, auditLocked: true }))).toBeUndefined();
  });

  it('names each part that failed, the exec audit first', () => {
    expect(refusal(readyLine({ scratch: 0, network: 2, audit: 1, auditLocked: true }))).toBe(
      'the exec-audit rules could not be loaded and locked (audit=1); the network could not be configured (network=2)',
    );
    expect(refusal(readyLine({ timedOut: true }))).toBe('it did not finish within 30 s');
  });

  it('is refused when the exec audit is not locked, even if the rules loaded', () => {
    expect(refusal(readyLine({ scratch: 0, network: 0, audit: 0, auditLocked: false }))).toBe(
      'the kernel does not report the exec-audit rules locked',
    );
  });

  it('does not parse without set-up results or the lock, or with a status that is not a number', () => {
    for (const setup of [
      undefined,
      { scratch: 0, network: 0, audit: 0 },
      { scratch: 0, network: 0, audit: '0', auditLocked: true },
      { scratch: 0, network: 0, audit: 0, auditLocked: 'yes' },
      { timedOut: false },
    ]) {
      expect(refusal(readyLine(setup)), JSON.stringify(setup)).toMatch(/^malformed ready: setup/);
    }
    expect(refusal(JSON.stringify({ type: 'ready', setup: { timedOut: true } }))).toMatch(/^malformed ready/);
  });
});

describe('the kill_user_processes answer', () => {
  it('parses the processes killed and any survivors', () => {
    expect(
      parseGuestLine(
        JSON.stringify({
          type: 'killed',
          id: 'k1',
          processes: [{ pid: 412, argv: ['sleep', '600'] }],
          survivors: [],
        }),
      ),
    ).toEqual({ type: 'killed', id: 'k1', processes: [{ pid: 412, argv: ['sleep', '600'] }], survivors: [] });
    expect(
      parseGuestLine(JSON.stringify({ type: 'killed', id: 'k1', processes: [{ pid: 'x' }] })),
    ).toMatchObject({
      type: 'malformed',
      claimedType: 'killed',
    });
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
