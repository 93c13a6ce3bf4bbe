/** What every page route works with: built once by ../device-pages.ts for the pages' scope. */
import type { FastifyReply } from 'fastify';
import type { Logger } from 'pino';
import type { Clock } from '../../core/clock.ts';
import type { BridgeFlows } from '../../service/bridge.ts';
import type { CodeEntryGuard } from '../../service/code-entry-guard.ts';
import type { Metrics } from '../../observability/metrics.ts';
import { page, tooMany } from '../errors.ts';
import type { CsrfSessions } from '../plugins/csrf.ts';
import type { FormTargets } from '../plugins/security-headers.ts';
import { type Frame, type Result, entryPage } from '../views/pages.ts';

export interface PageContext {
  bridge: BridgeFlows;
  guard: CodeEntryGuard;
  csrf: CsrfSessions;
  formTargets: FormTargets;
  frame: Frame;
  /** the public URL's origin: the base callback URLs are parsed against */
  publicOrigin: string;
  /** the public URL is https: cookies are `Secure` */
  secure: boolean;
  /** the flood guard's requests per address per minute on each form route */
  requestsPerMinute: number;
  metrics: Metrics;
  log: Logger;
  clock: Clock;
}

/** The one answer for a code that is not usable (unknown, malformed, expired, used, denied): RFC 8628 §5.1. */
export function notUsable(ctx: PageContext, reply: FastifyReply, sid: string): FastifyReply {
  ctx.metrics.inc('devicegate_code_entry_failures_total');
  return page(reply, 400, entryPage(ctx.frame, { csrfToken: ctx.csrf.token(sid), invalid: true }));
}

export function doneUrl(result: Result): string {
  return `/device/done?result=${result}`;
}

/**
 * Counts a code entry against the failed-entry limits (RFC 8628 §5.1); throws the 429 page when one is reached, so
 * nothing is looked up. The caller takes the attempt back with `succeeded()` when the code was usable.
 */
export async function beginEntry(
  ctx: PageContext,
  clientIp: string,
): Promise<{ succeeded(): Promise<void> }> {
  const attempt = await ctx.guard.begin(clientIp);
  if (attempt.limited) {
    ctx.metrics.inc('devicegate_code_entry_limited_total');
    throw tooMany(attempt.retryAfter);
  }
  return attempt;
}
