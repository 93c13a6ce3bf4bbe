/**
 * `GET /device/done?result=…[&reason=…][&d=…]`: the outcome page, for one of a fixed list of results and failure
 * reasons (nothing is echoed; an unknown reason shows the general `failed` sentence), naming the device that `d`
 * seals (./done-link.ts).
 */
import { z } from 'zod';
import { PageError, page } from '../errors.ts';
import { FAILURE_REASONS, RESULTS, outcomePage } from '../views/pages.ts';
import type { PageScope } from '../zod.ts';
import { type PageContext, frameFor } from './context.ts';
import { openDoneDevice } from './done-link.ts';

/** An unknown or missing result is "not found" (404), not a bad request. */
const query = z.object({
  result: z.enum(RESULTS).optional().catch(undefined),
  reason: z.enum(FAILURE_REASONS).optional().catch(undefined),
  d: z.string().max(1024).optional().catch(undefined),
});

export function doneRoute(scope: PageScope, ctx: PageContext): void {
  scope.get('/device/done', { schema: { querystring: query } }, async (req, reply) => {
    if (req.query.result === undefined) throw new PageError(404, 'notFound');
    const { result, reason, d } = req.query;
    const device = d === undefined ? undefined : openDoneDevice(ctx.keys, d, result, ctx.clock.now());
    return page(reply, 200, outcomePage(frameFor(ctx, req).t, result, { reason, device }));
  });
}
