import { describe, expect, it } from 'vitest';
import { loadAppConfig } from '../../src/config/app-config.ts';
import {
  contextOf,
  spanContextOf,
  traceIdOf,
  traceParentOf,
  withSpan,
  withTraceParent,
} from '../../src/tracing/trace-parent.ts';
import { idOnlyTracer } from '../helpers/test-tracer.ts';

describe('tracing settings (OTEL_*)', () => {
  it('exports nothing without an endpoint, and names airlock with the defaults', () => {
    expect(loadAppConfig({}).tracing).toEqual({
      protocol: 'http/protobuf',
      headers: {},
      timeoutMs: 10_000,
      serviceName: 'airlock',
      resourceAttributes: {},
      sampler: 'parentbased_always_on',
      samplerRatio: 1,
    });
  });

  it('sends traces to the base endpoint + /v1/traces, or to the traces endpoint as given', () => {
    expect(loadAppConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }).tracing.endpoint).toBe(
      'http://collector:4318/v1/traces',
    );
    const both = loadAppConfig({
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://traces.example/otlp/v1/traces',
    });
    expect(both.tracing.endpoint).toBe('https://traces.example/otlp/v1/traces');
    expect(
      loadAppConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_SDK_DISABLED: 'true' })
        .tracing.endpoint,
    ).toBeUndefined();
  });

  it("reads headers, resource attributes, service name and sampler in the specification's formats", () => {
    const { tracing } = loadAppConfig({
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318',
      OTEL_EXPORTER_OTLP_HEADERS: 'x-team=ops, authorization=Bearer%20abc%3D%3D',
      OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=prod,host.rack=r7',
      OTEL_SERVICE_NAME: 'airlock-eu',
      OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
      OTEL_TRACES_SAMPLER_ARG: '0.25',
    });
    expect(tracing).toMatchObject({
      headers: { 'x-team': 'ops', authorization: 'Bearer abc==' },
      resourceAttributes: { 'deployment.environment.name': 'prod', 'host.rack': 'r7' },
      serviceName: 'airlock-eu',
      sampler: 'parentbased_traceidratio',
      samplerRatio: 0.25,
    });
  });

  it('names each bad variable and what it accepts', () => {
    const bad = (env: Record<string, string>) => () => loadAppConfig(env);
    expect(bad({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' })).toThrow(
      /OTEL_EXPORTER_OTLP_ENDPOINT.*http:\/\/ or https:\/\//,
    );
    expect(bad({ OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' })).toThrow(
      /OTEL_EXPORTER_OTLP_PROTOCOL.*http\/protobuf/,
    );
    expect(bad({ OTEL_EXPORTER_OTLP_HEADERS: 'no-equals-sign' })).toThrow(
      /OTEL_EXPORTER_OTLP_HEADERS.*"no-equals-sign" is not key=value/,
    );
    expect(bad({ OTEL_TRACES_SAMPLER: 'sometimes' })).toThrow(/OTEL_TRACES_SAMPLER.*parentbased_always_on/);
    expect(bad({ OTEL_TRACES_SAMPLER_ARG: '2' })).toThrow(/OTEL_TRACES_SAMPLER_ARG/);
  });
});

describe('traceparent', () => {
  it('round-trips a span context and refuses what is not a W3C traceparent', () => {
    const span = idOnlyTracer().startSpan('x');
    const parent = traceParentOf(span)!;
    // Without an endpoint spans are not sampled, but their ids are real.
    expect(parent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    const { traceId, spanId, traceFlags } = span.spanContext();
    expect(spanContextOf(parent)).toEqual({ traceId, spanId, traceFlags, isRemote: true });
    expect(traceIdOf(parent)).toBe(span.spanContext().traceId);
    for (const bad of [
      '',
      'garbage',
      `01-${'a'.repeat(32)}-${'b'.repeat(16)}-01`,
      `00-${'0'.repeat(32)}-${'b'.repeat(16)}-01`,
      `00-${'a'.repeat(32)}-${'0'.repeat(16)}-01`,
    ]) {
      expect(spanContextOf(bad), bad).toBeUndefined();
    }
    expect(contextOf('garbage')).toBe(contextOf(undefined));
  });

  it("gives a task the active span's traceparent, replacing one it copied", () => {
    const tracer = idOnlyTracer();
    const copied = { issueTitle: 't', traceParent: `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01` };
    expect(withTraceParent(copied)).toEqual({ issueTitle: 't' });
    const span = tracer.startSpan('intake');
    expect(withSpan(span, () => withTraceParent(copied))).toEqual({
      issueTitle: 't',
      traceParent: traceParentOf(span),
    });
  });
});
