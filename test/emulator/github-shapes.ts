import type { components, paths } from '@octokit/openapi-types';

/**
 * A GitHub response shape as the emulator serves it: any subset of GitHub's documented fields,
 * each with GitHub's own type, checked against @octokit/openapi-types. A field GitHub does not
 * have, or a value of another type (a wrong enum member, a missing `null`), fails type-checking.
 */
export type Shape<T> = T extends readonly (infer U)[]
  ? Shape<U>[]
  : T extends object
    ? { [K in keyof T]?: Shape<T[K]> }
    : T;

/** A named schema of GitHub's REST API (`repository`, `issue`, `check-run`, …) as a {@link Shape}. */
export type Schema<N extends keyof components['schemas']> = Shape<components['schemas'][N]>;

type JsonOf<R> = R extends { content: { 'application/json': infer J } } ? J : never;

/** The JSON answer of one REST operation (`Answer<'/app', 'get'>`) as a {@link Shape}. */
export type Answer<
  P extends keyof paths,
  M extends keyof paths[P],
  S extends number = 200,
> = paths[P][M] extends {
  responses: infer R;
}
  ? S extends keyof R
    ? Shape<JsonOf<R[S]>>
    : never
  : never;
