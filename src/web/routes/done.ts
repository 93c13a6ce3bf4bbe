/**
 * `GET /device/done?result=…[&reason=…]`: the outcome page, for one of a fixed list of results and failure reasons
 * (nothing is echoed; an unknown reason shows the general `failed` sentence).
 */
import { z } from 'zod';
import { PageError, page } from '../errors.ts';
import { FAILURE_REASONS, RESULTS, outcomePage } from '../views/pages.ts';
import type { PageScope } from '../zod.ts';
import type { PageContext } from './context.ts';

/** An unknown or missing result is "not found" (404), not a bad request. */
const query = z.object({
  result: z.enum(RESULTS).optional().catch(undefined),
  reason: z.enum(FAILURE_REASONS).optional().catch(undefined),
});

export function doneRoute(scope: PageScope, ctx: PageContext): void {
  scope.get('/device/done', { schema: { querystring: query } }, async (req, reply) => {
    if (req.query.result === undefined) throw new PageError(404, 'notFound');
    return page(reply, 200, outcomePage(ctx.frame, req.query.result, req.query.reason));
  });
}
