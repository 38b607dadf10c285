import type { Context } from 'hono';
import { streamSSE } from 'hono/streaming';
import type { AuditEvent, AuditLog } from '../audit/audit-log.ts';
import { isAirlockWrapper, timelineRow, wrapsInto } from './timeline-view.ts';

/** What a live stream of one task's events needs. */
export interface LiveStreamOptions {
  audit: Pick<AuditLog, 'events' | 'subscribe'>;
  taskId: string;
  /** Send events after this sequence number (the page's last row, or the browser's Last-Event-ID). */
  afterSeq: number;
  /** Whether the task has already ended (the stream then sends what is left and ends). */
  finished: boolean;
  /** Asks again whether the viewer may still see the task; false ends the stream. */
  stillAllowed: () => Promise<boolean>;
  recheckMs: number;
  keepAliveMs: number;
  /**
   * Re-renders the page's panels (header, outcome, steps, diff) by element id: sent after new
   * events, at most once per `panelsMs`, and once more when the task ends.
   */
  panels?: () => Promise<Record<string, string>>;
  panelsMs?: number;
}

/**
 * Server-sent events for a task page: first the events recorded since the page was rendered, then
 * each new one as the audit log writes it, until the task's outcome is recorded, the viewer loses
 * access, or the browser goes away. Each event carries its timeline row (a wrapper record's
 * command folded into it); the page's panels follow as `panels` events. Only this task's events
 * are ever sent.
 */
export function liveTaskStream(c: Context, o: LiveStreamOptions): Response {
  const panelsMs = o.panelsMs ?? 1000;
  return streamSSE(c, async (stream) => {
    const queue: AuditEvent[] = [];
    let wake: (() => void) | undefined;
    // Everywhere: with several processes, the task's worker writes most of its events.
    const unsubscribe = o.audit.subscribe(
      (event) => {
        if (event.taskId !== o.taskId) return;
        queue.push(event);
        wake?.();
      },
      { everywhere: true },
    );
    stream.onAbort(() => wake?.());
    let lastSent = o.afterSeq;
    let ended = false;
    let wrapper: AuditEvent | undefined;
    let panelsDue = false;
    let panelsSentAt = 0;
    const send = async (event: AuditEvent) => {
      if (event.seq <= lastSent) return;
      lastSent = event.seq;
      const folded = wrapper && wrapsInto(wrapper, event) ? wrapper.seq : undefined;
      wrapper = isAirlockWrapper(event) ? event : undefined;
      await stream.writeSSE({
        event: 'audit',
        id: String(event.seq),
        data: JSON.stringify({
          seq: event.seq,
          type: event.type,
          row: folded === undefined ? timelineRow(event).value : '',
          ...(folded !== undefined ? { foldedInto: folded } : {}),
          ...(event.type === 'task.state' ? { state: event.data.state } : {}),
        }),
      });
      panelsDue = true;
      if (event.type === 'task.outcome') ended = true;
    };
    const sendPanels = async (force: boolean) => {
      if (!o.panels || !panelsDue || stream.aborted) return;
      if (!force && Date.now() - panelsSentAt < panelsMs) return;
      panelsDue = false;
      panelsSentAt = Date.now();
      await stream.writeSSE({ event: 'panels', data: JSON.stringify(await o.panels()) });
    };
    try {
      // Subscribed first, then the backlog: nothing written in between is missed (duplicates are skipped).
      for (const event of await o.audit.events(o.taskId, { afterSeq: o.afterSeq })) await send(event);
      await sendPanels(true);
      let nextCheck = Date.now() + o.recheckMs;
      while (!ended && !o.finished && !stream.aborted) {
        if (queue.length === 0) {
          const panelsAt = panelsDue && o.panels ? panelsSentAt + panelsMs : Number.POSITIVE_INFINITY;
          const until = Math.min(nextCheck, panelsAt, Date.now() + o.keepAliveMs);
          await new Promise<void>((resolve) => {
            const timer = setTimeout(resolve, Math.max(0, until - Date.now()));
            wake = () => {
              clearTimeout(timer);
              resolve();
            };
          });
          wake = undefined;
        }
        while (queue.length && !stream.aborted) {
          const next = queue.shift()!;
          // Events reach this process from several writers (its own, and other processes'
          // through the database): one past a gap means the gap's events are committed (a chain is
          // written under its task's lock, in order), so they are read and sent first.
          if (next.seq > lastSent + 1)
            for (const missed of await o.audit.events(o.taskId, { afterSeq: lastSent, beforeSeq: next.seq }))
              await send(missed);
          await send(next);
        }
        if (stream.aborted) break;
        await sendPanels(ended);
        if (ended) break;
        if (Date.now() >= nextCheck) {
          if (!(await o.stillAllowed())) {
            await stream.writeSSE({ event: 'end', data: 'access' });
            return;
          }
          nextCheck = Date.now() + o.recheckMs;
        }
        if (queue.length === 0) await stream.write(': keep-alive\n\n');
      }
      await sendPanels(true);
      if (!stream.aborted) await stream.writeSSE({ event: 'end', data: 'finished' });
    } finally {
      unsubscribe();
    }
  });
}
