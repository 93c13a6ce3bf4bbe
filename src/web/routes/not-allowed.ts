/** Only GET/HEAD for pages and POST for forms: every other method on the pages' paths is 405, with `Allow`. */
import type { FastifyReply, FastifyRequest } from 'fastify';
import { page } from '../errors.ts';
import { errorPage } from '../views/pages.ts';
import type { PageScope } from '../zod.ts';
import { type PageContext, frameFor } from './context.ts';
import { CALLBACK_PATH } from './decision.ts';

const OTHERS = ['PUT', 'DELETE', 'PATCH', 'OPTIONS'] as const;

export function notAllowedRoutes(scope: PageScope, ctx: PageContext): void {
  const notAllowed = (allow: string) => async (req: FastifyRequest, reply: FastifyReply) =>
    page(reply.header('allow', allow), 405, errorPage(frameFor(ctx, req).t, 'notFound'));
  scope.route({ method: [...OTHERS], url: '/device', handler: notAllowed('GET, HEAD, POST') });
  scope.route({ method: ['GET', 'HEAD', ...OTHERS], url: '/device/decision', handler: notAllowed('POST') });
  scope.route({ method: ['POST', ...OTHERS], url: CALLBACK_PATH, handler: notAllowed('GET, HEAD') });
  scope.route({ method: ['POST', ...OTHERS], url: '/device/done', handler: notAllowed('GET, HEAD') });
}
