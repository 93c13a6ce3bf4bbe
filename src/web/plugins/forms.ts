/**
 * Request bodies of the pages: HTML forms only (`application/x-www-form-urlencoded`, at most 4 KiB); any other
 * content type is a 415. Which fields a form may carry is each route's declared schema, built with {@link formBody}.
 */
import fastifyFormbody from '@fastify/formbody';
import { z } from 'zod';
import { inScope } from './scope.ts';

const BODY_LIMIT = 4096;

export const forms = inScope<Record<never, never>>('devicegate-forms', async (scope) => {
  scope.removeAllContentTypeParsers();
  await scope.register(fastifyFormbody, { bodyLimit: BODY_LIMIT });
});

/**
 * The schema of a form body: exactly the given fields, each at most once. A repeated field parses as an array and an
 * unknown field (a `_method` override too) is refused, both as a validation error (400).
 */
export function formBody<S extends z.ZodRawShape>(shape: S) {
  return z.strictObject(shape);
}
