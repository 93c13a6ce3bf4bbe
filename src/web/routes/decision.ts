/**
 * `POST /device/decision`: Approve redirects to the upstream's authorize endpoint with an OAuth `state` bound to this
 * browser session (BridgeFlows.approve stores it; BridgeFlows.callback checks it, RFC 9700 §2.1.1 and §4.7); Deny
 * ends the flow. Both answer 303, never 307 (RFC 9700 §4.12). Counted by the failed-entry guard like a code entry,
 * unless the form carries the scanned link's proof `k` and it proves the flow (./context.ts `scannedFlow`).
 */
import { z } from 'zod';
import type { BridgeFlow } from '../../core/flow.ts';
import { floodLimited } from '../plugins/flood-guard.ts';
import { formBody } from '../plugins/forms.ts';
import type { PageScope } from '../zod.ts';
import { type PageContext, UNCOUNTED, beginEntry, doneUrl, notUsable, scannedFlow } from './context.ts';
import { sealDoneDevice } from './done-link.ts';

export const CALLBACK_PATH = '/oauth/callback';

const body = formBody({
  csrf: z.string().optional(),
  user_code: z.string().optional(),
  /** the scanned link's proof, carried by the confirm page it opened */
  k: z.string().optional(),
  decision: z.enum(['approve', 'deny']),
});

export function decisionRoute(scope: PageScope, ctx: PageContext): void {
  scope.post(
    '/device/decision',
    { schema: { body }, config: floodLimited(ctx.requestsPerMinute), preHandler: ctx.csrf.preHandler },
    async (req, reply) => {
      const sid = req.csrfSession;
      const code = req.body.user_code ?? '';
      const scanned = await scannedFlow(ctx, code, req.body.k);
      const attempt = scanned === undefined ? await beginEntry(ctx, req.ip) : UNCOUNTED;
      const target = await decide(ctx, req.body.decision, code, sid, scanned, req.ip).catch(
        async (err: unknown) => {
          await attempt.succeeded().catch(() => undefined);
          throw err;
        },
      );
      if (target === undefined) return notUsable(ctx, req, reply, sid, code);
      await attempt.succeeded();
      return reply.redirect(target, 303);
    },
  );
}

/**
 * Where the decision leads: the upstream's authorize endpoint (approve) or the outcome page naming the device (deny);
 * `undefined` when the code is not usable.
 */
async function decide(
  ctx: PageContext,
  decision: 'approve' | 'deny',
  code: string,
  sid: string,
  scanned: BridgeFlow | undefined,
  network: string,
): Promise<string | undefined> {
  if (decision === 'approve') {
    const approved = await ctx.bridge.approve(code, sid);
    if (approved === undefined) return undefined;
    ctx.formTargets.allow(approved.redirectUrl);
    return approved.redirectUrl;
  }
  // looked up before it dies, to name the device on the outcome page
  const flow = scanned ?? (await ctx.bridge.lookup(code));
  if (flow === undefined || !(await ctx.bridge.deny(code, network))) return undefined;
  return doneUrl('denied', { device: sealDoneDevice(ctx.keys, 'denied', flow, ctx.clock.now()) });
}
