/**
 * `POST /device`: the person submits a user code; a usable one shows the confirm page (RFC 8628 §5.4: the person
 * confirms before anything is approved), any other gets the one generic refusal. Counted by the failed-entry guard.
 */
import { z } from 'zod';
import { page } from '../errors.ts';
import { floodLimited } from '../plugins/flood-guard.ts';
import { formBody } from '../plugins/forms.ts';
import { confirmPage } from '../views/pages.ts';
import type { PageScope } from '../zod.ts';
import { type PageContext, beginEntry, frameFor, notUsable } from './context.ts';

const body = formBody({ csrf: z.string().optional(), user_code: z.string().optional() });

export function codeEntryRoute(scope: PageScope, ctx: PageContext): void {
  scope.post(
    '/device',
    { schema: { body }, config: floodLimited(ctx.requestsPerMinute), preHandler: ctx.csrf.preHandler },
    async (req, reply) => {
      const sid = req.csrfSession;
      const attempt = await beginEntry(ctx, req.ip);
      const typed = req.body.user_code ?? '';
      const flow = await ctx.bridge.lookup(typed).catch(async (err: unknown) => {
        await attempt.succeeded().catch(() => undefined);
        throw err;
      });
      if (flow === undefined) return notUsable(ctx, req, reply, sid, typed);
      await attempt.succeeded();
      const view = { csrfToken: ctx.csrf.token(sid), flow, now: ctx.clock.now() };
      return page(reply, 200, confirmPage(frameFor(ctx, req), view));
    },
  );
}
