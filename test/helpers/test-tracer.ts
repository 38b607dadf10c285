import type { Tracer } from '@opentelemetry/api';
import { startTracing } from '../../src/tracing/tracing.ts';
import { TracingSettings } from '../../src/tracing/tracing-settings.ts';

/** A tracer as airlock builds one without an endpoint: spans carry W3C ids and are not exported. */
export function idOnlyTracer(): Tracer {
  return startTracing(TracingSettings.parse({}), { role: 'all' }).tracer;
}
