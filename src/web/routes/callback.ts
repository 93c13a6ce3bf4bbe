/**
 * `GET /oauth/callback`: the upstream's redirect after sign-in. The query is handed to BridgeFlows.callback whole,
 * as raw parameters (no declared schema): oauth4webapi validates them itself, repeated parameters and `iss`
 * (RFC 9207) included. The browser's `state` cookie is read once and cleared.
 */
import { page } from '../errors.ts';
import { floodLimited } from '../plugins/flood-guard.ts';
import { errorPage } from '../views/pages.ts';
import type { PageScope } from '../zod.ts';
import { type PageContext, doneUrl } from './context.ts';
import { CALLBACK_PATH, STATE_COOKIE } from './decision.ts';

export function callbackRoute(scope: PageScope, ctx: PageContext): void {
  scope.get(CALLBACK_PATH, { config: floodLimited(ctx.requestsPerMinute) }, async (req, reply) => {
    const raw = req.cookies[STATE_COOKIE];
    let browserState: string | undefined;
    if (raw !== undefined) {
      const u = req.unsignCookie(raw);
      if (u.valid && u.value !== null) browserState = u.value;
    }
    reply.clearCookie(STATE_COOKIE, {
      path: CALLBACK_PATH,
      httpOnly: true,
      sameSite: 'lax',
      secure: ctx.secure,
    });
    const params = new URL(req.url, ctx.publicOrigin).searchParams;
    const r = await ctx.bridge.callback(params, browserState);
    if (r.outcome === 'invalid') return page(reply, 400, errorPage(ctx.frame, 'callback'));
    if (r.outcome === 'failed') ctx.log.info({ error: r.error.code }, 'bridge sign-in failed');
    return reply.redirect(doneUrl(r.outcome), 303);
  });
}
