import { describe, expect, it } from 'vitest';
import type { ChainVerdict } from '../../src/audit/chain-verdicts.ts';
import { taskHeader } from '../../src/web/task-header.ts';
import { taskFixture } from '../helpers/task-fixture.ts';

const verdict: ChainVerdict = {
  state: 'verified',
  events: 3,
  headHash: 'f'.repeat(64),
  problem: undefined,
  execAuditGaps: [],
  checkedAt: '2026-01-01T00:00:00.000Z',
};

const render = (context: Record<string, unknown>) =>
  String(
    taskHeader({
      task: taskFixture({ state: 'succeeded', finishedAt: '2026-01-01T00:01:00.000Z', context }),
      verdict,
      phase: undefined,
      webUrl: 'https://github.com',
      now: '2026-01-01T00:02:00.000Z',
      view: 'steps',
    }),
  );

describe('the task page header', () => {
  it("shows the trace the task's spans are in, and no trace row when it has none", () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const page = render({ traceParent: `00-${traceId}-00f067aa0ba902b7-01` });
    expect(page).toContain(
      `<dt>Trace</dt><dd><code class="hash small" id="task-trace">${traceId}</code></dd>`,
    );
    expect(render({})).not.toContain('<dt>Trace</dt>');
  });
});
