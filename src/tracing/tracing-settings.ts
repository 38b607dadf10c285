import { z } from 'zod';

/** The one OTLP protocol airlock's exporter speaks (the specification's default). */
export const OTLP_PROTOCOL = 'http/protobuf';

const SAMPLERS = [
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
  'always_on',
  'always_off',
  'traceidratio',
] as const;

/** `key=value,key=value` with percent-encoded values (W3C Baggage's format, as OTel specifies it). */
const KeyValueList = () =>
  z
    .string()
    .default('')
    .transform((list, ctx) => {
      const entries: Record<string, string> = {};
      for (const item of list.split(',')) {
        if (!item.trim()) continue;
        const at = item.indexOf('=');
        const key = at > 0 ? item.slice(0, at).trim() : '';
        if (!key) {
          ctx.addIssue({ code: 'custom', message: `"${item.trim()}" is not key=value` });
          continue;
        }
        try {
          entries[key] = decodeURIComponent(item.slice(at + 1).trim());
        } catch {
          ctx.addIssue({ code: 'custom', message: `the value of ${key} is not percent-encoded` });
        }
      }
      return entries;
    });

/**
 * Tracing's settings, from the standard OpenTelemetry variables (see docs/observability.md).
 * Without an endpoint nothing is exported, but spans still get W3C trace and span ids, so logs and
 * task records carry them either way.
 */
export const TracingSettings = z.object({
  /**
   * OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (the full URL), or OTEL_EXPORTER_OTLP_ENDPOINT with
   * `/v1/traces` appended: the collector spans are sent to over OTLP/HTTP. Unset: none sent.
   */
  endpoint: z
    .url({ protocol: /^https?$/, message: 'must be an http:// or https:// URL of an OTLP/HTTP receiver' })
    .optional(),
  /** OTEL_EXPORTER_OTLP_PROTOCOL / OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: http/protobuf only. */
  protocol: z
    .literal(OTLP_PROTOCOL, {
      message: `airlock sends traces as ${OTLP_PROTOCOL} (OTLP/HTTP, port 4318 on a collector); unset it or set it to ${OTLP_PROTOCOL}`,
    })
    .default(OTLP_PROTOCOL),
  /** OTEL_EXPORTER_OTLP_HEADERS / OTEL_EXPORTER_OTLP_TRACES_HEADERS: sent with every export (API keys). */
  headers: KeyValueList(),
  /** OTEL_EXPORTER_OTLP_TRACES_TIMEOUT / OTEL_EXPORTER_OTLP_TIMEOUT: ms one export may take. */
  timeoutMs: z.coerce.number().int().positive().default(10_000),
  /** OTEL_SERVICE_NAME: `airlock` unless set; the process's role is the `airlock.role` attribute. */
  serviceName: z.string().min(1).default('airlock'),
  /** OTEL_RESOURCE_ATTRIBUTES: more attributes of this process (`deployment.environment.name=prod`). */
  resourceAttributes: KeyValueList(),
  /** OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG (the ratio for the `traceidratio` samplers). */
  sampler: z
    .enum(SAMPLERS, { message: `must be one of ${SAMPLERS.join(', ')}` })
    .default('parentbased_always_on'),
  samplerRatio: z.coerce.number().min(0).max(1).default(1),
});
export type TracingSettings = z.infer<typeof TracingSettings>;

/** The raw values {@link TracingSettings} parses, picked from an environment. */
export function tracingEnvironment(env: Record<string, string | undefined>): Record<string, unknown> {
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  const disabled = env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true';
  const endpoint =
    env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim() ||
    (base ? `${base.replace(/\/+$/, '')}/v1/traces` : undefined);
  return {
    endpoint: disabled ? undefined : endpoint,
    protocol: env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL || env.OTEL_EXPORTER_OTLP_PROTOCOL || undefined,
    headers: [env.OTEL_EXPORTER_OTLP_HEADERS, env.OTEL_EXPORTER_OTLP_TRACES_HEADERS]
      .filter(Boolean)
      .join(','),
    timeoutMs: env.OTEL_EXPORTER_OTLP_TRACES_TIMEOUT || env.OTEL_EXPORTER_OTLP_TIMEOUT || undefined,
    serviceName: env.OTEL_SERVICE_NAME || undefined,
    resourceAttributes: env.OTEL_RESOURCE_ATTRIBUTES,
    sampler: env.OTEL_TRACES_SAMPLER || undefined,
    samplerRatio: env.OTEL_TRACES_SAMPLER_ARG || undefined,
  };
}

/** Which variable sets each field, for error messages. */
export const TRACING_ENV_NAMES: Record<string, string> = {
  'tracing.endpoint': 'OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)',
  'tracing.protocol': 'OTEL_EXPORTER_OTLP_PROTOCOL (or OTEL_EXPORTER_OTLP_TRACES_PROTOCOL)',
  'tracing.headers': 'OTEL_EXPORTER_OTLP_HEADERS',
  'tracing.timeoutMs': 'OTEL_EXPORTER_OTLP_TIMEOUT',
  'tracing.serviceName': 'OTEL_SERVICE_NAME',
  'tracing.resourceAttributes': 'OTEL_RESOURCE_ATTRIBUTES',
  'tracing.sampler': 'OTEL_TRACES_SAMPLER',
  'tracing.samplerRatio': 'OTEL_TRACES_SAMPLER_ARG',
};
