/**
 * `GET /oauth/callback`: the upstream's redirect after sign-in. The query is handed to BridgeFlows.callback whole,
 * as raw parameters (no declared schema): oauth4webapi validates them itself, repeated parameters and `iss`
 * (RFC 9207) included. With it goes the browser's session (../plugins/csrf.ts), which must be the one the `state`
 * was issued to. Nothing here clears or sets a cookie: a refused callback leaves the browser's other approvals alone.
 */
import { page } from '../errors.ts';
import { floodLimited } from '../plugins/flood-guard.ts';
import { FAILURE_REASONS, type FailureReason, errorPage } from '../views/pages.ts';
import type { PageScope } from '../zod.ts';
import { type PageContext, doneUrl, frameFor } from './context.ts';
import { CALLBACK_PATH } from './decision.ts';
import { sealDoneDevice } from './done-link.ts';

export function callbackRoute(scope: PageScope, ctx: PageContext): void {
  scope.get(CALLBACK_PATH, { config: floodLimited(ctx.requestsPerMinute) }, async (req, reply) => {
    const params = new URL(req.url, ctx.publicOrigin).searchParams;
    const r = await ctx.bridge.callback(params, ctx.csrf.session(req), req.ip);
    if (r.outcome === 'invalid') return page(reply, 400, errorPage(frameFor(ctx, req).t, 'callback'));
    if (r.outcome === 'authorized' || r.outcome === 'denied') {
      const device = sealDoneDevice(ctx.keys, r.outcome, r.flow, ctx.clock.now());
      return reply.redirect(doneUrl(r.outcome, { device }), 303);
    }
    if (r.outcome !== 'failed') return reply.redirect(doneUrl(r.outcome), 303);
    ctx.log.info({ error: r.error.code }, 'bridge sign-in failed');
    return reply.redirect(doneUrl('failed', { reason: failureReason(r.error.code) }), 303);
  });
}

/** The page's sentence for the device's error code; codes without one of their own get the general one. */
function failureReason(code: string): FailureReason {
  return FAILURE_REASONS.find((r) => r === code) ?? 'server_error';
}
