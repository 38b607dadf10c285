import {
  type Attributes,
  type Context,
  context,
  type Span,
  type SpanOptions,
  SpanStatusCode,
  type Tracer,
} from '@opentelemetry/api';
import { ATTR_ERROR_TYPE } from '@opentelemetry/semantic-conventions';
import { AirlockError } from '../errors.ts';

/**
 * Runs `fn` in a new active span, ended when `fn` settles; a throw marks it failed with the
 * error's type (an AirlockError's code or the class name), never its message: messages can quote
 * command output or GitHub's answers, and spans leave the host. The record keeps the words.
 */
export async function inSpan<T>(
  tracer: Tracer,
  name: string,
  options: SpanOptions & { parent?: Context },
  fn: (span: Span) => Promise<T>,
): Promise<T> {
  const { parent, ...spanOptions } = options;
  return tracer.startActiveSpan(name, spanOptions, parent ?? context.active(), async (span) => {
    try {
      return await fn(span);
    } catch (error) {
      failSpan(span, error);
      throw error;
    } finally {
      span.end();
    }
  });
}

/** Marks a span failed by the type of `error` (see inSpan). */
export function failSpan(span: Span, error: unknown, attributes: Attributes = {}): void {
  const type = errorType(error);
  span.setAttributes({ [ATTR_ERROR_TYPE]: type, ...attributes });
  span.setStatus({ code: SpanStatusCode.ERROR, message: type });
}

function errorType(error: unknown): string {
  if (error instanceof AirlockError) return error.code;
  if (error instanceof Error) return error.name;
  return typeof error;
}
