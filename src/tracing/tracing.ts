import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { context, DiagLogLevel, diag, type Tracer } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  type Sampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
} from '@opentelemetry/sdk-trace';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../logger.ts';
import type { TracingSettings } from './tracing-settings.ts';

/**
 * Which part of airlock a process runs (AIRLOCK_ROLE, or `local` for `airlock run`), recorded as
 * the `airlock.role` resource attribute.
 */
export type AirlockRole = 'all' | 'control' | 'worker' | 'local';

/** The name airlock's spans are recorded under (the instrumentation scope). */
export const TRACER_NAME = 'airlock';

/** A process's tracing: the tracer every stage starts its spans with, and its shutdown. */
export interface Tracing {
  tracer: Tracer;
  /** Whether spans are sent to a collector; without an endpoint they only carry ids. */
  exporting: boolean;
  /** Sends every ended span now (tests, and before a process exits); a failure is logged, not thrown. */
  flush(): Promise<void>;
  /** Flushes and stops exporting; safe to call twice; a failure is logged, not thrown. */
  shutdown(): Promise<void>;
}

/**
 * Starts tracing for this process. With an endpoint, spans are batched and sent over OTLP/HTTP
 * (protobuf); without one, spans are not recorded at all (an always-off sampler) but still get W3C
 * trace and span ids, which is what log lines and task records carry: ids cost a few random
 * numbers, recording and export cost nothing.
 */
export function startTracing(
  settings: TracingSettings,
  options: { role: AirlockRole; log?: Logger },
): Tracing {
  useAsyncContext();
  const exporting = settings.endpoint !== undefined;
  // An export that fails (collector down, wrong endpoint, refused headers) is said in airlock's log:
  // the SDK reports background exports through its diagnostic logger, a flush to its caller.
  const log = options.log?.child({ component: 'tracing' });
  const reported = (error: unknown) =>
    log?.warn(
      { err: errorMessage(error), endpoint: settings.endpoint },
      'traces: spans could not be exported',
    );
  if (exporting && log) {
    diag.setLogger(
      {
        error: (message, ...args) => log.warn({ detail: args.map(String) }, `traces: ${message}`),
        warn: (message, ...args) => log.warn({ detail: args.map(String) }, `traces: ${message}`),
        info: () => {},
        debug: () => {},
        verbose: () => {},
      },
      { logLevel: DiagLogLevel.WARN, suppressOverrideMessage: true },
    );
  }
  const provider = new TracerProvider({
    resource: resourceFromAttributes({
      ...settings.resourceAttributes,
      [ATTR_SERVICE_NAME]: settings.serviceName,
      'service.instance.id': randomUUID(),
      'host.name': hostname(),
      'airlock.role': options.role,
    }),
    sampler: exporting ? sampler(settings) : new AlwaysOffSampler(),
    spanProcessors: settings.endpoint
      ? [
          new BatchSpanProcessor({
            exporter: new OTLPTraceExporter({
              url: settings.endpoint,
              headers: settings.headers,
              timeoutMillis: settings.timeoutMs,
            }),
          }),
        ]
      : [],
  });
  let stopped: Promise<void> | undefined;
  return {
    tracer: provider.getTracer(TRACER_NAME),
    exporting,
    flush: () => provider.forceFlush().catch(reported),
    shutdown: () => {
      stopped ??= provider.shutdown().catch(reported);
      return stopped;
    },
  };
}

function sampler(settings: TracingSettings): Sampler {
  const ratio = new TraceIdRatioBasedSampler(settings.samplerRatio);
  switch (settings.sampler) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return ratio;
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: ratio });
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
  }
}

// OpenTelemetry's context API is process-wide by design: one AsyncLocalStorage-based context
// manager carries the active span through awaits, for every airlock built in this process.
let asyncContext: AsyncLocalStorageContextManager | undefined;
function useAsyncContext(): void {
  if (asyncContext) return;
  asyncContext = new AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(asyncContext);
}
