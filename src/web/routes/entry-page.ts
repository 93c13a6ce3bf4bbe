/**
 * `GET /device` (and HEAD): the code-entry form. `?user_code=` only pre-fills the input — the person always submits
 * it and then confirms (RFC 8628 §3.3.1, §5.4). Opens the browser's CSRF session.
 */
import { z } from 'zod';
import { MAX_USER_CODE_INPUT, formatUserCode, normalizeUserCode } from '../../core/codes.ts';
import { page } from '../errors.ts';
import { entryPage } from '../views/pages.ts';
import type { PageScope } from '../zod.ts';
import type { PageContext } from './context.ts';

/** Other query fields are ignored; a repeated or over-long `user_code` just pre-fills nothing. */
const query = z.object({
  user_code: z.string().max(MAX_USER_CODE_INPUT).optional().catch(undefined),
});

export function entryPageRoute(scope: PageScope, ctx: PageContext): void {
  scope.get('/device', { schema: { querystring: query } }, async (req, reply) => {
    const sid = ctx.csrf.open(req, reply);
    const input = req.query.user_code;
    let prefill: string | undefined;
    if (input !== undefined) {
      const canonical = normalizeUserCode(input);
      prefill = canonical === undefined ? input : formatUserCode(canonical);
    }
    return page(
      reply,
      200,
      entryPage(ctx.frame, { csrfToken: ctx.csrf.token(sid), ...(prefill !== undefined && { prefill }) }),
    );
  });
}
