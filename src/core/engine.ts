/**
 * The flow state machine. Pure: `(flow, event, now) → transition`. No I/O, no clock of its own; the caller stores the
 * new flow atomically (compare-and-set on the version) and carries out the effects.
 */
import type { Flow, TokenSet } from './flow.ts';
import { stateRank } from './flow.ts';
import { type OAuthErrorCode, OAuthError, invalidRequest } from './errors.ts';

/** RFC 8628 §3.5: on `slow_down` the interval grows by 5 s for this and all later requests. */
export const SLOW_DOWN_STEP_SECONDS = 5;
/** Upper bound for the connection-failure backoff factor (2^5 = 32 intervals). */
export const MAX_BACKOFF_EXPONENT = 5;

/** The answer of one upstream poll in relay mode, already mapped from HTTP by the upstream client. */
export type PollOutcome =
  | { kind: 'token'; token: TokenSet }
  | { kind: 'authorization_pending' }
  | { kind: 'slow_down' }
  | { kind: 'access_denied' }
  | { kind: 'expired_token' }
  /** Any other OAuth error from the token endpoint: the flow fails with the mapped code. */
  | { kind: 'error'; code: OAuthErrorCode; description: string }
  /** Timeout, connection error, 5xx or 429: back off and try again (RFC 8628 §3.5). */
  | { kind: 'unreachable'; retryAfterSeconds?: number };

export type FlowEvent =
  /** The device asks for the current state (`req/status`) or re-sends `req/authorize` with the same rid. */
  | { type: 'status' }
  /** `req/ack`: the device has its result. */
  | { type: 'ack' }
  /** `req/cancel`. */
  | { type: 'cancel' }
  /** The scheduler visits the flow (due poll, due delivery or expiry). */
  | { type: 'tick' }
  /** Relay mode: the upstream answered a poll. */
  | { type: 'poll'; outcome: PollOutcome }
  /**
   * Bridge mode: the person approved on the confirm page; the user code is used up. Carries the PKCE verifier and
   * nonce of the upstream authorization request that follows.
   */
  | { type: 'approve'; codeVerifier: string; nonce?: string }
  /** The person denied (confirm page, or the upstream answered `access_denied`). */
  | { type: 'deny'; description?: string }
  /** Bridge mode: the code exchange returned tokens. */
  | { type: 'token'; token: TokenSet }
  /** Bridge mode: the upstream refused (callback error or failed exchange). */
  | { type: 'fail'; code: OAuthErrorCode; description: string }
  /** The result was handed to the broker. */
  | { type: 'delivered' };

export interface Transition {
  /** The flow after the event (the same object when nothing changed). */
  flow: Flow;
  /** Whether `flow` differs from the input and must be stored. */
  changed: boolean;
  /** Send the device the current view of the flow (pending / authorized / error). */
  notify: boolean;
  /** The event was refused: answer this error to whoever sent it (the flow is unchanged). */
  reject?: OAuthError;
}

export function isExpired(flow: Flow, now: number): boolean {
  // RFC 8628 §3.2: valid for expires_in seconds; valid up to and including that instant.
  return now > flow.expiresAt;
}

const unchanged = (flow: Flow, notify = false, reject?: OAuthError): Transition =>
  reject === undefined ? { flow, changed: false, notify } : { flow, changed: false, notify, reject };
const changedTo = (flow: Flow, notify: boolean): Transition => ({ flow, changed: true, notify });

function finish(flow: Flow, state: Flow['state'], error?: Flow['error'], token?: TokenSet): Flow {
  const s = flow.secrets;
  // Flows are never mutated: secrets that lose nothing and gain nothing are shared rather than copied (so the store's
  // codec can tell they are unchanged and need not seal them again).
  let secrets = s;
  if (
    token !== undefined ||
    s.deviceCode !== undefined ||
    s.codeVerifier !== undefined ||
    s.nonce !== undefined ||
    s.verificationUriComplete !== undefined
  ) {
    secrets = { ...s };
    delete secrets.deviceCode;
    delete secrets.codeVerifier;
    delete secrets.nonce;
    delete secrets.verificationUriComplete;
    if (token !== undefined) secrets.token = token;
  }
  const next: Flow = { ...flow, state, secrets };
  delete next.nextPollAt;
  delete next.failures;
  if (error !== undefined) next.error = error;
  return next;
}

const expiredError = {
  code: 'expired_token',
  description: 'the user code expired before it was approved',
} as const;

/**
 * Applies one event. Order of checks follows RFC 8628: expiry first (§3.5 `expired_token`), then the state, then the
 * event's own rules.
 */
export function apply(flow: Flow, event: FlowEvent, now: number): Transition {
  // A pending flow past its lifetime expires before anything else happens (§3.5). A token that already came back
  // is still accepted: the upstream decided while the flow was live.
  if (flow.state === 'pending' && isExpired(flow, now) && event.type !== 'poll' && event.type !== 'token') {
    const expired = finish(flow, 'expired', expiredError);
    const t = apply(expired, event, now);
    return { ...t, changed: true, notify: t.notify || event.type === 'tick' || event.type === 'status' };
  }

  switch (event.type) {
    case 'status':
      return unchanged(flow, flow.state !== 'acked', flow.state === 'acked' ? acknowledged(flow) : undefined);

    case 'ack':
      if (flow.state === 'pending')
        return unchanged(flow, false, invalidRequest('nothing to acknowledge yet'));
      if (flow.state === 'acked') return unchanged(flow);
      return changedTo({ ...finish(flow, 'acked'), secrets: { userCode: flow.secrets.userCode } }, false);

    case 'cancel':
      if (flow.state !== 'pending') {
        return unchanged(flow, false, invalidRequest(`request ${flow.rid} is already finished`));
      }
      return changedTo(
        finish(flow, 'cancelled', {
          code: 'access_denied',
          description: 'cancelled at the device’s request',
        }),
        true,
      );

    case 'tick':
      // Delivery retries and expiry are handled by the caller and above; a live flow just stays.
      return unchanged(flow, stateRank(flow.state) === 1 && flow.deliveredAt === undefined);

    case 'poll':
      if (flow.state !== 'pending') return unchanged(flow);
      return applyPoll(flow, event.outcome, now);

    case 'approve':
      if (flow.state !== 'pending' || flow.approvedAt !== undefined) {
        return unchanged(flow, false, invalidRequest('this code was already used'));
      }
      return changedTo(
        {
          ...flow,
          approvedAt: now,
          secrets: {
            ...flow.secrets,
            codeVerifier: event.codeVerifier,
            ...(event.nonce !== undefined && { nonce: event.nonce }),
          },
        },
        false,
      );

    case 'deny':
      if (flow.state !== 'pending')
        return unchanged(flow, false, invalidRequest('this code was already used'));
      return changedTo(
        finish(flow, 'denied', {
          code: 'access_denied',
          description: event.description ?? 'the person denied the request',
        }),
        true,
      );

    case 'token':
      if (flow.state !== 'pending')
        return unchanged(flow, false, invalidRequest('the flow is already finished'));
      return changedTo(finish(flow, 'authorized', undefined, event.token), true);

    case 'fail':
      if (flow.state !== 'pending') return unchanged(flow);
      return changedTo(
        finish(
          flow,
          event.code === 'access_denied' ? 'denied' : event.code === 'expired_token' ? 'expired' : 'failed',
          {
            code: event.code,
            description: event.description,
          },
        ),
        true,
      );

    case 'delivered':
      if (stateRank(flow.state) !== 1 || flow.deliveredAt !== undefined) return unchanged(flow);
      return changedTo({ ...flow, deliveredAt: now }, false);
  }
}

function applyPoll(flow: Flow, outcome: PollOutcome, now: number): Transition {
  switch (outcome.kind) {
    case 'token':
      return changedTo(finish(flow, 'authorized', undefined, outcome.token), true);
    case 'authorization_pending': {
      const next: Flow = { ...flow, nextPollAt: now + flow.interval * 1000 };
      delete next.failures;
      return changedTo(next, false);
    }
    case 'slow_down': {
      // §3.5: "the interval MUST be increased by 5 seconds for this and all subsequent requests".
      const interval = flow.interval + SLOW_DOWN_STEP_SECONDS;
      const next: Flow = { ...flow, interval, nextPollAt: now + interval * 1000 };
      delete next.failures;
      return changedTo(next, false);
    }
    case 'access_denied':
      return changedTo(
        finish(flow, 'denied', { code: 'access_denied', description: 'the person denied the request' }),
        true,
      );
    case 'expired_token':
      return changedTo(finish(flow, 'expired', expiredError), true);
    case 'error':
      return changedTo(
        finish(flow, 'failed', { code: outcome.code, description: outcome.description }),
        true,
      );
    case 'unreachable': {
      // §3.5: on connection timeouts reduce the polling frequency; exponential backoff (doubling).
      const failures = (flow.failures ?? 0) + 1;
      const backoff = flow.interval * 1000 * 2 ** Math.min(failures, MAX_BACKOFF_EXPONENT);
      const retryAfter = (outcome.retryAfterSeconds ?? 0) * 1000;
      return changedTo({ ...flow, failures, nextPollAt: now + Math.max(backoff, retryAfter) }, false);
    }
  }
}

function acknowledged(flow: Flow): OAuthError {
  return invalidRequest(`request ${flow.rid} is finished and was acknowledged; start a new one`);
}

/**
 * When the scheduler must next visit this flow, or `undefined` for never:
 * - relay, pending: the next poll, but never later than just after expiry (to tell the device);
 * - bridge, pending: just after expiry;
 * - finished and not yet delivered: `now + leaseMs`, a safety net should this instance die before it delivers;
 * - delivered or acknowledged: never.
 */
export function dueAt(flow: Flow, now: number, leaseMs: number): number | undefined {
  if (flow.state === 'pending') {
    const afterExpiry = flow.expiresAt + 1;
    return flow.nextPollAt === undefined ? afterExpiry : Math.min(flow.nextPollAt, afterExpiry);
  }
  if (flow.state !== 'acked' && flow.deliveredAt === undefined) return now + leaseMs;
  return undefined;
}

/** The error a finished, unsuccessful flow reports to its device. */
export function flowError(flow: Flow): OAuthError | undefined {
  if (flow.state === 'pending' || flow.state === 'authorized') return undefined;
  if (flow.state === 'acked') return acknowledged(flow);
  const e = flow.error ?? { code: 'server_error', description: 'the request failed' };
  return new OAuthError(e.code, e.description);
}

/** Seconds left, rounded up, never negative (RFC 8628 `expires_in`). */
export function secondsLeft(flow: Flow, now: number): number {
  return Math.max(0, Math.ceil((flow.expiresAt - now) / 1000));
}
