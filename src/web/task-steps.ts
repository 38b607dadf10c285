import type { AuditEvent } from '../audit/audit-log.ts';
import { isExecAuditGapType } from '../audit/chain-verdicts.ts';
import { eventSummary, isRefusal, toolTarget, usagePhrase } from './event-summary.ts';

/** A silence longer than this between two events is marked in the steps. */
export const GAP_MARK_MS = 10 * 60_000;

/** How an item should stand out. */
export type StepTone = 'plain' | 'muted' | 'refused' | 'warning' | 'error' | 'ok';

/** One thing that happened within a step. */
export interface StepItem {
  seq: number;
  ts: string;
  /** A short chip: the tool's name, `message`, `refused`, ... */
  label: string;
  tone: StepTone;
  /** One line: a command, a path, a summary. */
  title: string;
  /** Whether the title is a command or path (shown as code). */
  code?: boolean;
  /** Longer text: untrusted markdown (what the agent said) or output (shown preformatted, collapsed). */
  markdown?: string;
  output?: string;
  /** A command's exit code (null: unknown). */
  exitCode?: number | null;
  /** Files this item changed, linked to the diff. */
  edits?: string[];
  /** A silence before this item, in ms (only when longer than GAP_MARK_MS). */
  silenceMs?: number;
}

/** One step: an airlock phase, or the agent's run. */
export interface Step {
  id: string;
  title: string;
  /** `airlock` for airlock's own phases, `agent` for what the agent did. */
  actor: 'airlock' | 'agent';
  startTs: string;
  endTs: string | undefined;
  items: StepItem[];
  /** Model usage summed over the step's usage reports. */
  usage?: { inputTokens: number; outputTokens: number; costUsd: number | undefined };
}

const PHASES: Record<string, { id: string; title: string }> = {
  queued: { id: 'queued', title: 'Queued' },
  starting: { id: 'boot', title: 'Boot the VM and mint the token' },
  running: { id: 'workspace', title: 'Prepare the workspace' },
  pushing: { id: 'push', title: 'Push the branch' },
};
const TERMINAL = new Set(['succeeded', 'failed', 'cancelled', 'timed_out']);

/**
 * Turns a task's events (the exec audit left out) into the steps a reader follows: the request,
 * airlock's phases, the prompt and the agent's messages, tool calls and edits, the push, the
 * outcome and clean-up. Pure; the page renders it.
 */
export function taskSteps(events: readonly AuditEvent[], finishedAt: string | null): Step[] {
  const steps: Step[] = [];
  let step: Step | undefined;
  const open = (id: string, title: string, actor: Step['actor'], ts: string) => {
    if (step) step.endTs = ts;
    step = { id: `${id}-${steps.length}`, title, actor, startTs: ts, endTs: undefined, items: [] };
    steps.push(step);
    return step;
  };
  let lastTs: string | undefined;
  let lastMessage: StepItem | undefined;
  let pendingTool: StepItem | undefined;
  const toolsById = new Map<string, StepItem>();
  const add = (event: AuditEvent, item: Omit<StepItem, 'seq' | 'ts'>) => {
    const full: StepItem = { seq: event.seq, ts: event.ts, ...item };
    if (lastTs && Date.parse(event.ts) - Date.parse(lastTs) > GAP_MARK_MS)
      full.silenceMs = Date.parse(event.ts) - Date.parse(lastTs);
    (step ?? open('request', 'Request', 'airlock', event.ts)).items.push(full);
    return full;
  };

  for (const event of events) {
    const d = event.data as Record<string, unknown>;
    if (!step) open('request', 'Request', 'airlock', event.ts);
    if (event.type === 'task.state') {
      const state = String(d.state);
      const phase = PHASES[state];
      if (phase) open(phase.id, phase.title, 'airlock', event.ts);
      else if (TERMINAL.has(state) && step?.id.startsWith('end') !== true)
        open('end', 'Outcome and clean-up', 'airlock', event.ts);
      if (d.reason && !TERMINAL.has(state))
        add(event, { label: 'state', tone: 'muted', title: `${state}: ${String(d.reason)}` });
    } else if (event.type === 'task.prompt') {
      open('agent', 'Agent', 'agent', event.ts);
      const text = typeof d.text === 'string' ? d.text : undefined;
      add(event, {
        label: 'prompt',
        tone: 'plain',
        title: text
          ? `The prompt as sent (${text.length.toLocaleString('en-US')} characters${d.truncated ? ', truncated' : ''})`
          : eventSummary(event),
        ...(text ? { output: text } : {}),
      });
    } else if (event.type === 'agent.event') {
      agentItem(event, d);
    } else if (event.type === 'agent.exit') {
      const ok = d.code === 0;
      add(event, { label: 'exit', tone: ok ? 'ok' : 'error', title: eventSummary(event) });
      open('finish', 'Commit the changes', 'airlock', event.ts);
    } else if (event.type === 'git.diff') {
      add(event, {
        label: 'diff',
        tone: 'plain',
        title:
          String(d.stat ?? '')
            .trim()
            .split('\n')
            .at(-1)
            ?.trim() || 'no changes',
        edits: [],
      });
    } else if (event.type === 'ci.verdict') {
      if (step?.id.startsWith('ci') !== true) open('ci', 'CI on the pushed branch', 'airlock', event.ts);
      add(event, {
        label: 'CI',
        tone: d.verdict === 'failure' ? 'error' : 'plain',
        title: eventSummary(event),
      });
    } else if (event.type === 'task.outcome') {
      if (step?.id.startsWith('end') !== true) open('end', 'Outcome and clean-up', 'airlock', event.ts);
      add(event, {
        label: 'outcome',
        tone: d.state === 'succeeded' ? 'ok' : 'error',
        title: eventSummary(event),
      });
    } else {
      add(event, {
        label: shortType(event.type),
        tone: isRefusal(event)
          ? 'refused'
          : isExecAuditGapType(event.type) || event.type === 'task.recovered'
            ? 'warning'
            : (event.type === 'cleanup.vm' && d.destroyed === false) ||
                (event.type === 'cleanup.proxy' && d.tokenRevoked === false)
              ? 'error'
              : IMPORTANT.has(event.type)
                ? 'plain'
                : 'muted',
        title: eventSummary(event),
      });
    }
    lastTs = event.ts;
  }
  if (step) step.endTs = finishedAt ?? undefined;
  return steps;

  function agentItem(event: AuditEvent, d: Record<string, unknown>) {
    if (step?.actor !== 'agent') open('agent', 'Agent', 'agent', event.ts);
    if (event.content && event.content.state !== 'kept') {
      add(event, { label: 'text', tone: 'muted', title: eventSummary(event) });
      return;
    }
    switch (d.kind) {
      case 'message': {
        const text = String(d.text ?? '');
        // The CLIs repeat their last message as the run's result: mark it, do not show it twice.
        if (d.final && lastMessage?.markdown === text) {
          lastMessage.label = 'final message';
          return;
        }
        const thinking = d.role === 'thinking';
        lastMessage = add(event, {
          label: thinking ? 'thinking' : d.final ? 'final message' : 'message',
          tone: thinking ? 'muted' : 'plain',
          title: '',
          markdown: text,
        });
        return;
      }
      case 'tool_call': {
        const item = add(event, {
          label: String(d.tool ?? 'tool'),
          tone: 'plain',
          title: toolTarget(d.input),
          code: true,
        });
        pendingTool = item;
        if (typeof d.id === 'string') toolsById.set(d.id, item);
        return;
      }
      case 'tool_result': {
        const call = typeof d.id === 'string' ? toolsById.get(d.id) : undefined;
        if (call) {
          if (typeof d.output === 'string') call.output = d.output;
          if (d.ok === false) call.tone = 'error';
          return;
        }
        add(event, {
          label: String(d.tool ?? 'result'),
          tone: d.ok === false ? 'error' : 'muted',
          title: `${d.ok === false ? 'failed' : 'result'}`,
          ...(typeof d.output === 'string' ? { output: d.output } : {}),
        });
        return;
      }
      case 'command': {
        const exitCode = typeof d.exitCode === 'number' ? d.exitCode : null;
        const output = typeof d.output === 'string' ? d.output : undefined;
        // A shell tool call and the command it ran are one step.
        if (pendingTool && pendingTool.title === d.command && pendingTool.exitCode === undefined) {
          pendingTool.exitCode = exitCode;
          if (output !== undefined) pendingTool.output = output;
          if (exitCode !== 0) pendingTool.tone = 'error';
          return;
        }
        add(event, {
          label: 'command',
          tone: exitCode === 0 ? 'plain' : 'error',
          title: String(d.command ?? ''),
          code: true,
          exitCode,
          ...(output !== undefined ? { output } : {}),
        });
        return;
      }
      case 'file_edit': {
        const path = String(d.path ?? '');
        if (pendingTool && pendingTool.exitCode === undefined && pendingTool.seq >= event.seq - 2) {
          pendingTool.edits = [...(pendingTool.edits ?? []), path];
          return;
        }
        add(event, { label: 'edit', tone: 'plain', title: `${String(d.change)} ${path}`, edits: [path] });
        return;
      }
      case 'usage': {
        if (!step!.usage) step!.usage = { inputTokens: 0, outputTokens: 0, costUsd: undefined };
        const usage = step!.usage;
        usage.inputTokens += Number(d.inputTokens ?? 0);
        usage.outputTokens += Number(d.outputTokens ?? 0);
        if (typeof d.costUsd === 'number') usage.costUsd = (usage.costUsd ?? 0) + d.costUsd;
        add(event, { label: 'usage', tone: 'muted', title: usagePhrase(d) });
        return;
      }
      case 'error':
        add(event, {
          label: 'error',
          tone: /\b403\b|airlock:|refused/i.test(String(d.message)) ? 'refused' : 'error',
          title: String(d.message ?? ''),
        });
        return;
      case 'session':
        add(event, { label: 'session', tone: 'muted', title: eventSummary(event).replace(/^session /, '') });
        return;
      default:
        add(event, { label: String(d.kind ?? 'event'), tone: 'muted', title: eventSummary(event) });
    }
  }
}

/** Event types shown at full strength in the steps (the rest are quieter bookkeeping). */
const IMPORTANT = new Set([
  'task.created',
  'task.setup',
  'vm.created',
  'agent.info',
  'git.ref_update',
  'audit.purged',
  'token.minted',
]);

function shortType(type: string): string {
  const known: Record<string, string> = {
    'task.created': 'requested',
    'task.config': 'config',
    'task.setup': 'setup',
    'task.recovered': 'recovered',
    'token.minted': 'token',
    'token.revoked': 'token',
    'vm.created': 'VM',
    'agent.info': 'agent',
    'proxy.egress': 'network',
    'proxy.git': 'git',
    'proxy.model': 'model call',
    'proxy.refused': 'refused',
    'proxy.budget_exceeded': 'budget',
    'git.ref_update': 'push',
    'cleanup.vm': 'clean-up',
    'cleanup.proxy': 'clean-up',
    'audit.purged': 'purged',
    'vm.exec_audit_incomplete': 'exec audit gap',
    'vm.malformed_output': 'exec audit gap',
  };
  return known[type] ?? type;
}
