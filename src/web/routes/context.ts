/** What every page route works with: built once by ../device-pages.ts for the pages' scope. */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from 'pino';
import type { Clock } from '../../core/clock.ts';
import {
  MAX_USER_CODE_INPUT,
  formatUserCode,
  normalizeUserCode,
  userCodePlaceholder,
} from '../../core/codes.ts';
import type { Keys } from '../../core/crypto.ts';
import type { BridgeFlow } from '../../core/flow.ts';
import { checkScanProof } from '../../core/scan-link.ts';
import type { BridgeFlows } from '../../service/bridge.ts';
import type { CodeEntryGuard } from '../../service/code-entry-guard.ts';
import type { Metrics } from '../../observability/metrics.ts';
import { page, tooMany } from '../errors.ts';
import { negotiate } from '../i18n/index.ts';
import type { CsrfSessions } from '../plugins/csrf.ts';
import type { FormTargets } from '../plugins/security-headers.ts';
import { type FailureReason, type Frame, type Result, entryPage } from '../views/pages.ts';

export interface PageContext {
  bridge: BridgeFlows;
  guard: CodeEntryGuard;
  /** checks the proof of a scanned link (src/core/scan-link.ts) */
  keys: Keys;
  /** letters per user code: the entry field's placeholder */
  userCodeLength: number;
  csrf: CsrfSessions;
  formTargets: FormTargets;
  /** host of the upstream identity provider, named on the entry and confirm pages */
  issuerHost: string;
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

/** The frame of `req`'s page: the issuer, and the catalogue of the language the browser asks for. */
export function frameFor(ctx: PageContext, req: FastifyRequest): Frame {
  return { issuerHost: ctx.issuerHost, t: negotiate(req.headers['accept-language']) };
}

/**
 * The one answer for a code that is not usable (unknown, malformed, expired, used, denied): RFC 8628 §5.1. What the
 * person typed stays in the field (formatted when it is a code's shape) so a typo costs one letter, not eight: it
 * goes back only into this answer to the POST that carried it, which is never cached.
 */
export function notUsable(
  ctx: PageContext,
  req: FastifyRequest,
  reply: FastifyReply,
  sid: string,
  typed: string,
): FastifyReply {
  ctx.metrics.inc('devicegate_code_entry_failures_total');
  const placeholder = userCodePlaceholder(ctx.userCodeLength);
  const prefill = asTyped(typed);
  const view = {
    csrfToken: ctx.csrf.token(sid),
    placeholder,
    invalid: true,
    ...(prefill !== undefined && { prefill }),
  };
  return page(reply, 400, entryPage(frameFor(ctx, req), view));
}

/**
 * A code as the entry field shows it again: `XXXX-XXXX` when it reads as one, else as typed; input longer than any
 * code is typed with (refused unread, ../../core/codes.ts) is not shown again.
 */
export function asTyped(input: string): string | undefined {
  if (input.length > MAX_USER_CODE_INPUT) return undefined;
  const canonical = normalizeUserCode(input);
  return canonical === undefined ? input : formatUserCode(canonical);
}

/**
 * The outcome page's URL; `reason` (one of `FAILURE_REASONS` in ../views/pages.ts) says why a `failed` sign-in failed,
 * `device` names the device (./done-link.ts).
 */
export function doneUrl(result: Result, o: { reason?: FailureReason; device?: string } = {}): string {
  const reason = o.reason === undefined ? '' : `&reason=${o.reason}`;
  const device = o.device === undefined ? '' : `&d=${o.device}`;
  return `/device/done?result=${result}${reason}${device}`;
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

/** What a decision that skips the failed-entry guard takes back: nothing was counted. */
export const UNCOUNTED = { succeeded: async (): Promise<void> => {} };

/**
 * The flow a scanned link proves (src/core/scan-link.ts): `proof` is valid for the code in `input` and has not
 * expired, and the code belongs to a live, unused flow with the proof's expiry. `undefined` otherwise; when the
 * proof itself is wrong nothing is looked up, so a made-up `k` is no oracle and costs the store nothing. Never
 * counted by the failed-entry guard: only the holder of the device's link can make this succeed.
 */
export async function scannedFlow(
  ctx: PageContext,
  input: string,
  proof: string | undefined,
): Promise<BridgeFlow | undefined> {
  if (proof === undefined) return undefined;
  const canonical = normalizeUserCode(input);
  if (canonical === undefined) return undefined;
  const expiresAt = checkScanProof(ctx.keys, canonical, proof, ctx.clock.now());
  if (expiresAt === undefined) return undefined;
  const flow = await ctx.bridge.lookup(canonical);
  return flow?.expiresAt === expiresAt ? flow : undefined;
}
