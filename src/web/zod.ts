/**
 * Zod schemas as fastify route schemas, without a dependency: {@link ZodTypeProvider} types `req.body` /
 * `req.query` from the route's declared schema, and {@link useZod} makes a scope validate with those schemas. A
 * failed validation is a fastify validation error (status 400), which the pages' error handler turns into the
 * "bad request" page (./errors.ts).
 */
import type { FastifyInstance, FastifyTypeProvider } from 'fastify';
import type { z } from 'zod';

export interface ZodTypeProvider extends FastifyTypeProvider {
  validator: this['schema'] extends z.ZodType ? z.output<this['schema']> : unknown;
}

/**
 * Makes `scope` (and the scopes it registers) validate request parts with their declared zod schemas, the parsed
 * value replacing the raw one, and returns it typed by {@link ZodTypeProvider}.
 */
export function useZod(scope: FastifyInstance) {
  scope.setValidatorCompiler<z.ZodType>(({ schema }) => (data) => {
    const parsed = schema.safeParse(data);
    return parsed.success ? { value: parsed.data } : { error: new Error(parsed.error.message) };
  });
  return scope.withTypeProvider<ZodTypeProvider>();
}

/** The instance type route files register on. */
export type PageScope = ReturnType<typeof useZod>;
