/**
 * What the HTTP server answers beside the health endpoints and the mode's routes, in every mode: the pages'
 * stylesheet and icon, and the "not found" answer for every unknown path. That answer is an HTML page in the
 * browser's language with the pages' security headers; a client that asks for JSON and not HTML (a script probing
 * an API path) gets fastify's JSON shape instead. Neither repeats the path, which may carry a code.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { page } from './errors.ts';
import { negotiate } from './i18n/index.ts';
import { securityHeaders } from './plugins/security-headers.ts';
import { staticRoutes } from './routes/static.ts';
import { errorPage } from './views/pages.ts';

export interface ShellOptions {
  /** the public URL is https: send HSTS */
  secure: boolean;
  /** there is a code-entry page (bridge mode) for the "not found" page to lead to */
  codeEntry: boolean;
}

/** Registers the assets and the not-found handler in a scope of their own (the headers apply to them only). */
export async function pageShell(app: FastifyInstance, o: ShellOptions): Promise<void> {
  await app.register(async (scope) => {
    await scope.register(securityHeaders, { secure: o.secure });
    staticRoutes(scope);
    scope.setNotFoundHandler(async (req: FastifyRequest, reply: FastifyReply) => {
      if (wantsJson(req)) return reply.code(404).send({ statusCode: 404, error: 'Not Found' });
      const t = negotiate(req.headers['accept-language']);
      return page(reply, 404, errorPage(t, 'notFound', { codeEntry: o.codeEntry }));
    });
  });
}

/** `Accept` names JSON and not HTML (browsers always name HTML when they navigate). */
function wantsJson(req: FastifyRequest): boolean {
  const accept = req.headers.accept ?? '';
  return accept.includes('application/json') && !accept.includes('text/html');
}
