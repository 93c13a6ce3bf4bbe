/**
 * `GET /device` (and HEAD): the code-entry form, or — for the device's scanned link — the confirm page. Opens the
 * browser's CSRF session.
 *
 * `?user_code=` alone only pre-fills the input: the person submits it (through the failed-entry guard) and then
 * confirms (RFC 8628 §3.3.1, §5.4). With the link's proof `&k=` (src/core/scan-link.ts) valid for a live, unused flow,
 * the confirm page is shown at once, its decision form carrying the proof; the person still approves or denies. A
 * missing, wrong or stale `k` gets the same pre-filled entry form as a code alone, and nothing is counted.
 */
import { z } from 'zod';
import { MAX_USER_CODE_INPUT, userCodePlaceholder } from '../../core/codes.ts';
import { page } from '../errors.ts';
import { confirmPage, entryPage } from '../views/pages.ts';
import type { PageScope } from '../zod.ts';
import { type PageContext, asTyped, frameFor, scannedFlow } from './context.ts';

/** Other query fields are ignored; a repeated or over-long `user_code` or `k` is as if absent. */
const query = z.object({
  user_code: z.string().max(MAX_USER_CODE_INPUT).optional().catch(undefined),
  k: z.string().max(MAX_USER_CODE_INPUT).optional().catch(undefined),
});

export function entryPageRoute(scope: PageScope, ctx: PageContext): void {
  scope.get('/device', { schema: { querystring: query } }, async (req, reply) => {
    const sid = ctx.csrf.open(req, reply);
    const input = req.query.user_code;
    const csrfToken = ctx.csrf.token(sid);
    const frame = frameFor(ctx, req);
    if (input !== undefined && req.query.k !== undefined) {
      const flow = await scannedFlow(ctx, input, req.query.k);
      if (flow !== undefined) {
        const view = { csrfToken, flow, now: ctx.clock.now(), proof: req.query.k };
        return page(reply, 200, confirmPage(frame, view));
      }
    }
    const placeholder = userCodePlaceholder(ctx.userCodeLength);
    const prefill = input === undefined ? undefined : asTyped(input);
    const view = { csrfToken, placeholder, ...(prefill !== undefined && { prefill }) };
    return page(reply, 200, entryPage(frame, view));
  });
}
