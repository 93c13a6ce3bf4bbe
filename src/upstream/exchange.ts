/**
 * One upstream HTTP exchange, the same way for every endpoint: the request (oauth4webapi with our HTTP client, no
 * redirects, a deadline on the injected timers), then oauth4webapi's processing, then one classification of what went
 * wrong. What a failure means at each endpoint is decided by the table in ./errors.ts, not here.
 */
import * as oauth from 'oauth4webapi';
import type { Logger } from 'pino';
import type { PollOutcome } from '../core/engine.ts';
import type { Clock, Timers } from '../core/clock.ts';
import { UnavailableError } from '../core/errors.ts';
import type { SignIn } from './types.ts';
import { UNUSABLE_ANSWER, asPollOutcome, meaning, refusalError } from './errors.ts';
import type { UpstreamFetch } from './http.ts';
import { normalised, slowDownInterval } from './deviations.ts';

/** Longest `Retry-After` honoured (seconds). */
export const MAX_RETRY_AFTER_S = 3600;

/** What every upstream HTTP exchange needs. */
export interface HttpContext {
  readonly fetch: UpstreamFetch;
  /** deadline for one HTTP exchange, body included (ms) */
  readonly timeoutMs: number;
  /** allow plain-http endpoints (oauth4webapi `[allowInsecureRequests]`) */
  readonly allowInsecure: boolean;
  readonly clock: Clock;
  readonly timers: Timers;
  readonly log: Logger;
}

/** The options handed to one oauth4webapi request function. */
export interface RequestOptions {
  signal: AbortSignal;
  [oauth.customFetch]: UpstreamFetch;
  [oauth.allowInsecureRequests]?: boolean;
}

/** The endpoints an exchange goes to (the callback is no exchange: it arrives in the browser's redirect). */
export type ExchangeEndpoint =
  'device_authorization' | 'token_poll' | 'code_exchange' | 'refresh' | 'revocation';

/** What the rest of an exchange's log lines and reasons call it. */
const NAMES: Record<ExchangeEndpoint, { what: string; endpoint: string }> = {
  device_authorization: { what: 'device authorization', endpoint: 'device authorization endpoint' },
  token_poll: { what: 'device token request', endpoint: 'token endpoint' },
  code_exchange: { what: 'code exchange', endpoint: 'token endpoint' },
  refresh: { what: 'refresh', endpoint: 'token endpoint' },
  revocation: { what: 'token revocation', endpoint: 'revocation endpoint' },
};

/** How an exchange went wrong. */
export type ExchangeFailure =
  /** timeout, connection error, 429, 5xx or an answer that is not OAuth (HTML, a redirect, a malformed body) */
  | { kind: 'unavailable'; reason: string; retryAfterSeconds?: number; cause?: unknown }
  /**
   * an OAuth error answer (RFC 6749 §5.2); a `WWW-Authenticate` challenge counts as `invalid_client`;
   * `intervalSeconds`: the new interval a `slow_down` carried (./deviations.ts)
   */
  | { kind: 'refused'; error: string; status: number; intervalSeconds?: number }
  /** a 200 that fails oauth4webapi's checks */
  | { kind: 'unusable'; reason: string };

export type Exchanged<T> = { ok: true; value: T } | { ok: false; failure: ExchangeFailure };

/**
 * Runs `run` with the options for one oauth4webapi request and a fresh deadline of `timeoutMs` on the injected timers.
 * The deadline stays armed until `run` returns, so it covers reading and processing the body too.
 */
export async function withDeadline<T>(
  ctx: HttpContext,
  run: (options: RequestOptions) => Promise<T>,
): Promise<T> {
  const controller = new AbortController();
  const timer = ctx.timers.setTimeout(
    () => controller.abort(new DOMException(`no answer within ${ctx.timeoutMs} ms`, 'TimeoutError')),
    ctx.timeoutMs,
  );
  timer.unref(); // a pending deadline must not keep the process alive
  try {
    return await run({
      signal: controller.signal,
      [oauth.customFetch]: ctx.fetch,
      ...(ctx.allowInsecure && { [oauth.allowInsecureRequests]: true }),
    });
  } finally {
    ctx.timers.clear(timer);
  }
}

/**
 * One exchange with `endpoint`: `request` sends it, `process` checks the answer (both oauth4webapi). Never throws:
 * every failure comes back classified, and is logged without secrets (refusals while polling only at debug level,
 * since `authorization_pending` is the normal answer).
 */
export async function exchange<T>(
  ctx: HttpContext,
  endpoint: ExchangeEndpoint,
  request: (options: RequestOptions) => Promise<Response>,
  process: (res: Response) => Promise<T>,
): Promise<Exchanged<T>> {
  const result = await withDeadline(ctx, async (options) => {
    let res: Response;
    try {
      res = await request(options);
    } catch (err) {
      return failed({
        kind: 'unavailable',
        reason: `${NAMES[endpoint].what} failed: ${reason(err)}`,
        cause: err,
      });
    }
    if (res.status === 429 || res.status >= 500) {
      await discard(res);
      const seconds = retryAfter(res, ctx.clock);
      return failed({
        kind: 'unavailable',
        reason: `the ${NAMES[endpoint].endpoint} answered HTTP ${res.status}`,
        ...(seconds !== undefined && { retryAfterSeconds: seconds }),
      });
    }
    try {
      return { ok: true as const, value: await process(await normalised(endpoint, res)) };
    } catch (err) {
      return failed(classify(endpoint, res, err));
    }
  });
  if (!result.ok) logFailure(ctx.log, endpoint, result.failure);
  return result;
}

function failed(failure: ExchangeFailure): { ok: false; failure: ExchangeFailure } {
  return { ok: false, failure };
}

/** What a failed `process` step means, from the error oauth4webapi raised. */
function classify(endpoint: ExchangeEndpoint, res: Response, err: unknown): ExchangeFailure {
  if (err instanceof oauth.ResponseBodyError) {
    const interval = err.error === 'slow_down' ? slowDownInterval(err.cause) : undefined;
    return {
      kind: 'refused',
      error: err.error,
      status: err.status,
      ...(interval !== undefined && { intervalSeconds: interval }),
    };
  }
  if (err instanceof oauth.WWWAuthenticateChallengeError) {
    return { kind: 'refused', error: 'invalid_client', status: err.status };
  }
  const why = `invalid ${NAMES[endpoint].what} response: ${reason(err)}`;
  if (res.status === 200 && isCheckFailure(err)) return { kind: 'unusable', reason: why };
  return { kind: 'unavailable', reason: why, cause: err };
}

function logFailure(log: Logger, endpoint: ExchangeEndpoint, failure: ExchangeFailure): void {
  const what = NAMES[endpoint].what;
  switch (failure.kind) {
    case 'refused': {
      const fields = { endpoint, error: failure.error, status: failure.status };
      if (endpoint === 'token_poll') log.debug(fields, `the upstream answered the ${what} with an error`);
      else log.warn(fields, `the upstream refused a ${what}`);
      return;
    }
    case 'unusable':
      log.warn({ endpoint, err: failure.reason }, `the upstream sent an unusable ${what} response`);
      return;
    case 'unavailable':
      log.debug({ endpoint, err: failure.reason }, `the ${what} did not get through`);
  }
}

/** The value of an exchange with an endpoint that fails by throwing: `OAuthError` or `UnavailableError`. */
export function orThrow<T>(endpoint: Exclude<ExchangeEndpoint, 'token_poll'>, result: Exchanged<T>): T {
  if (result.ok) return result.value;
  const f = result.failure;
  switch (f.kind) {
    case 'refused':
      throw refusalError(meaning(endpoint, f.error), `the upstream answered ${f.error}`);
    case 'unusable':
      throw refusalError(UNUSABLE_ANSWER[endpoint], f.reason);
    case 'unavailable':
      throw new UnavailableError('upstream', f.reason, f.cause === undefined ? {} : { cause: f.cause });
  }
}

/** A token poll's result as an RFC 8628 §3.5 outcome; never throws. */
export function asPollResult(result: Exchanged<SignIn>): PollOutcome {
  if (result.ok) {
    const { token, subject } = result.value;
    return { kind: 'token', token, ...(subject !== undefined && { subject }) };
  }
  const f = result.failure;
  switch (f.kind) {
    case 'refused': {
      const outcome = asPollOutcome(meaning('token_poll', f.error));
      return outcome.kind === 'slow_down' && f.intervalSeconds !== undefined
        ? { kind: 'slow_down', intervalSeconds: f.intervalSeconds }
        : outcome;
    }
    case 'unusable':
      return asPollOutcome(UNUSABLE_ANSWER.token_poll);
    case 'unavailable':
      return f.retryAfterSeconds === undefined
        ? { kind: 'unreachable' }
        : { kind: 'unreachable', retryAfterSeconds: f.retryAfterSeconds };
  }
}

/** Errors oauth4webapi raises when an answer fails its checks (as opposed to transport errors). */
function isCheckFailure(err: unknown): boolean {
  return err instanceof oauth.OperationProcessingError || err instanceof oauth.UnsupportedOperationError;
}

/** `Retry-After` (RFC 9110 §10.2.3) as seconds: delay-seconds or an HTTP date (against the injected clock); capped. */
function retryAfter(res: Response, clock: Clock): number | undefined {
  const value = res.headers.get('retry-after')?.trim();
  if (value === undefined || value === '') return undefined;
  if (/^\d+$/.test(value)) return Math.min(Number(value), MAX_RETRY_AFTER_S);
  const at = Date.parse(value);
  if (Number.isNaN(at)) return undefined;
  return Math.min(MAX_RETRY_AFTER_S, Math.max(0, Math.ceil((at - clock.now()) / 1000)));
}

/** Lets go of a body nobody will read. */
export async function discard(res: Response): Promise<void> {
  await res.body?.cancel().catch(() => undefined);
}

/**
 * A one-line reason for logs and readiness: never a response body. Unlike `describe` in observability/log.ts it adds
 * the cause's message, since undici reports a refused connection as "fetch failed" with the reason in the cause.
 */
export function reason(err: unknown): string {
  if (err instanceof oauth.ResponseBodyError) return `HTTP ${err.status} ${err.error}`;
  if (err instanceof Error) {
    const cause = err.cause instanceof Error ? ` (${err.cause.message})` : '';
    return `${err.message}${cause}`;
  }
  return String(err);
}
