import { type Context, context, ROOT_CONTEXT, type Span, type SpanContext, trace } from '@opentelemetry/api';
import { z } from 'zod';

const TRACE_PARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/**
 * A span's W3C `traceparent` (`00-<trace id>-<span id>-<flags>`): how a trace crosses from one
 * stage to the next through the database (inbox, delivery log, task), whichever process runs it.
 */
export const TraceParent = z.string().regex(TRACE_PARENT, { message: 'not a W3C traceparent' });
export type TraceParent = z.infer<typeof TraceParent>;

/** The traceparent of a span (or span context); undefined for an invalid (all-zero) one. */
export function traceParentOf(span: Span | SpanContext | undefined): TraceParent | undefined {
  const ctx = span && 'spanContext' in span ? span.spanContext() : span;
  if (!ctx || !trace.isSpanContextValid(ctx)) return undefined;
  return `00-${ctx.traceId}-${ctx.spanId}-${(ctx.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}

/** The traceparent of the span active here, if any. */
export function activeTraceParent(): TraceParent | undefined {
  return traceParentOf(trace.getActiveSpan());
}

/** The span context a traceparent names, as a remote parent; undefined when there is none. */
export function spanContextOf(traceParent: string | null | undefined): SpanContext | undefined {
  const match = traceParent ? TRACE_PARENT.exec(traceParent) : null;
  if (!match) return undefined;
  const spanContext: SpanContext = {
    traceId: match[1]!,
    spanId: match[2]!,
    traceFlags: Number.parseInt(match[3]!, 16),
    isRemote: true,
  };
  return trace.isSpanContextValid(spanContext) ? spanContext : undefined;
}

/**
 * A context whose parent span is the one a traceparent names, to start a stage's span under; the
 * root context (a new trace) when it names none.
 */
export function contextOf(traceParent: string | null | undefined): Context {
  const parent = spanContextOf(traceParent);
  return parent ? trace.setSpanContext(ROOT_CONTEXT, parent) : ROOT_CONTEXT;
}

/** The trace id in a traceparent (what logs and records show), or undefined. */
export function traceIdOf(traceParent: string | null | undefined): string | undefined {
  return spanContextOf(traceParent)?.traceId;
}

/**
 * A task's `context` with the traceparent of the span active here (the span that decided to
 * create the task), replacing any it had: a retry copies its parent's context but has a trace of
 * its own (linked to the parent's, see taskRunLinks).
 */
export function withTraceParent<T extends object>(
  taskContext: T,
): Omit<T, 'traceParent'> & { traceParent?: string } {
  const { traceParent: _inherited, ...rest } = taskContext as T & { traceParent?: string };
  const current = activeTraceParent();
  return current ? { ...rest, traceParent: current } : rest;
}

/** Runs `fn` with `span` active (for child spans and the trace ids in log lines). */
export function withSpan<T>(span: Span, fn: () => T): T {
  return context.with(trace.setSpan(context.active(), span), fn);
}
