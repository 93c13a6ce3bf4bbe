/** The pages' only assets: the stylesheet and the icon (no script anywhere). */
import type { FastifyInstance } from 'fastify';
import { FAVICON_PATH, STYLESHEET_PATH } from '../views/pages.ts';
import { FAVICON_SVG, STYLESHEET } from '../views/style.ts';

export function staticRoutes(scope: FastifyInstance): void {
  scope.get(STYLESHEET_PATH, async (_req, reply) => reply.type('text/css; charset=utf-8').send(STYLESHEET));
  scope.get(FAVICON_PATH, async (_req, reply) => reply.type('image/svg+xml').send(FAVICON_SVG));
}
