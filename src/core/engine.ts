/**
 * The flow state machine. Pure: `(flow, event, now) → transition`. No I/O, no clock of its own; the caller stores the
 * new flow atomically (compare-and-set on the version) and carries out the effects.
 */
import type { BridgeFlow, Flow, FlowError, FlowState, RelayFlow, TokenSet } from './flow.ts';
import { stateRank } from './flow.ts';
import { type OAuthErrorCode, OAuthError, invalidRequest } from './errors.ts';

/** RFC 8628 §3.5: on `slow_down` the interval grows by 5 s for this and all later requests. */
export const SLOW_DOWN_STEP_SECONDS = 5;
/** Upper bound for the connection-failure backoff factor (2^5 = 32 intervals). */
export const MAX_BACKOFF_EXPONENT = 5;

/** The answer of one upstream poll in relay mode, already mapped from HTTP by the upstream client. */
export type PollOutcome =
  /**
   * `refreshable`: the gateway kept a grant from this token set (set by the grant store, not the upstream);
   * `subject`: who approved, when the upstream said so (a validated ID token's `sub`); for the approval cap
   */
  | { kind: 'token'; token: TokenSet; refreshable?: boolean; subject?: string }
  | { kind: 'authorization_pending' }
  /** `intervalSeconds`: the new interval the upstream named (at least the current one is kept); else +5 s */
  | { kind: 'slow_down'; intervalSeconds?: number }
  | { kind: 'access_denied' }
  | { kind: 'expired_token' }
  /**
   * `invalid_grant`: the upstream no longer knows the device code — expired, or already redeemed (RFC 8628 codes are
   * one-time), possibly by a poll of this or another instance whose answer was lost.
   */
  | { kind: 'invalid_grant' }
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
  /** Relay mode: the scheduler is about to poll the upstream (recorded before the device code is sent). */
  | { type: 'polling' }
  /** Relay mode: the upstream answered a poll. */
  | { type: 'poll'; outcome: PollOutcome }
  /**
   * Bridge mode: the person approved on the confirm page; the user code is used up. Carries the PKCE verifier and
   * nonce of the upstream authorization request that follows.
   */
  | { type: 'approve'; codeVerifier: string; nonce?: string }
  /** The person denied (confirm page, or the upstream answered `access_denied`). */
  | { type: 'deny'; description?: string }
  /** Bridge mode: the code exchange returned tokens (`refreshable`: the gateway kept a grant from them). */
  | { type: 'token'; token: TokenSet; refreshable?: boolean }
  /** Bridge mode: the upstream refused (callback error or failed exchange). */
  | { type: 'fail'; code: OAuthErrorCode; description: string }
  /** The result was handed to the broker. */
  | { type: 'delivered' };

export interface Transition<F extends Flow = Flow> {
  /** The flow after the event (the same object when nothing changed; always of the input's mode). */
  flow: F;
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

function unchanged<F extends Flow>(flow: F, notify = false, reject?: OAuthError): Transition<F> {
  return reject === undefined ? { flow, changed: false, notify } : { flow, changed: false, notify, reject };
}
function changedTo<F extends Flow>(flow: F, notify: boolean): Transition<F> {
  return { flow, changed: true, notify };
}

const expiredError = {
  code: 'expired_token',
  description: 'the user code expired before it was approved',
} as const;

/** `invalid_grant` with nothing lost: the upstream forgot the request (it expired there first, or was revoked). */
const forgottenError = {
  code: 'expired_token',
  description: 'the identity provider no longer knows this request',
} as const;

/**
 * `invalid_grant` after a poll whose answer was lost: the person may well have approved and a gateway instance that
 * stopped (or could not write) redeemed the one-time device code. Not `expired_token`: nothing expired.
 */
export const APPROVAL_LOST = {
  code: 'server_error',
  description: 'the approval may have been used by a gateway instance that stopped; start a new request',
} as const;

/** Whether a poll answer ends the flow (the device code is spent or dead): its write must not be lost. */
export function isFinalPoll(outcome: PollOutcome): boolean {
  return !['authorization_pending', 'slow_down', 'unreachable'].includes(outcome.kind);
}

/** What differs between the modes: which secrets and fields a result drops, and the mode-only events. */
interface ModeRules<F extends Flow> {
  /** The flow with a result: its upstream secrets and schedule dropped, the token (if any) kept. */
  finish(flow: F, state: FlowState, error?: FlowError, token?: TokenSet): F;
  /** Relay mode: the upstream answered a poll. */
  poll(flow: F, outcome: PollOutcome, now: number): Transition<F>;
  /** Relay mode: a poll is about to be sent. */
  polling(flow: F, now: number): Transition<F>;
  /** Bridge mode: the person approved. */
  approve(flow: F, event: Extract<FlowEvent, { type: 'approve' }>, now: number): Transition<F>;
}

const codeUsed = () => invalidRequest('this code was already used');

const relayRules: ModeRules<RelayFlow> = {
  finish(flow, state, error, token) {
    const { nextPollAt: _poll, failures: _failures, pollSentAt: _sent, lostPoll: _lost, ...rest } = flow;
    const s = flow.secrets;
    // Flows are never mutated: secrets that lose nothing and gain nothing are shared rather than copied (so the
    // store's codec can tell they are unchanged and need not seal them again).
    let secrets = s;
    if (token !== undefined || s.deviceCode !== undefined || s.verificationUriComplete !== undefined) {
      secrets = { userCode: s.userCode, ...(s.token !== undefined && { token: s.token }) };
      if (token !== undefined) secrets.token = token;
    }
    return { ...rest, state, secrets, ...(error !== undefined && { error }) };
  },
  poll(flow, outcome, now) {
    if (flow.state !== 'pending') return unchanged(flow);
    return applyPoll(flow, outcome, now);
  },
  polling(flow, now) {
    if (flow.state !== 'pending') return unchanged(flow);
    // Still marked: the previous poll's answer never made it into the store.
    const lost = flow.lostPoll === true || flow.pollSentAt !== undefined;
    return changedTo({ ...flow, pollSentAt: now, ...(lost && { lostPoll: true as const }) }, false);
  },
  // Relay flows have no code of the gateway's to approve: the person approves at the upstream.
  approve: (flow) => unchanged(flow, false, codeUsed()),
};

const bridgeRules: ModeRules<BridgeFlow> = {
  finish(flow, state, error, token) {
    const s = flow.secrets;
    let secrets = s; // shared when unchanged, as in relay mode
    if (token !== undefined || s.codeVerifier !== undefined || s.nonce !== undefined) {
      secrets = { userCode: s.userCode, ...(s.token !== undefined && { token: s.token }) };
      if (token !== undefined) secrets.token = token;
    }
    return { ...flow, state, secrets, ...(error !== undefined && { error }) };
  },
  // Bridge flows are never polled: the upstream's answer comes back through the callback (`token` / `fail`).
  poll: (flow) => unchanged(flow),
  polling: (flow) => unchanged(flow),
  approve(flow, event, now) {
    if (flow.state !== 'pending' || flow.approvedAt !== undefined) return unchanged(flow, false, codeUsed());
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
  },
};

/**
 * Applies one event. Order of checks follows RFC 8628: expiry first (§3.5 `expired_token`), then the state, then the
 * event's own rules. The flow keeps its mode.
 */
export function apply(flow: RelayFlow, event: FlowEvent, now: number): Transition<RelayFlow>;
export function apply(flow: BridgeFlow, event: FlowEvent, now: number): Transition<BridgeFlow>;
export function apply(flow: Flow, event: FlowEvent, now: number): Transition;
export function apply(flow: Flow, event: FlowEvent, now: number): Transition {
  return flow.mode === 'device'
    ? applyWith(flow, event, now, relayRules)
    : applyWith(flow, event, now, bridgeRules);
}

function applyWith<F extends Flow>(
  flow: F,
  event: FlowEvent,
  now: number,
  rules: ModeRules<F>,
): Transition<F> {
  // A pending flow past its lifetime expires before anything else happens (§3.5). A token that already came back
  // is still accepted: the upstream decided while the flow was live.
  if (flow.state === 'pending' && isExpired(flow, now) && event.type !== 'poll' && event.type !== 'token') {
    const expired = rules.finish(flow, 'expired', expiredError);
    const t = applyWith(expired, event, now, rules);
    const tells = event.type === 'tick' || event.type === 'status' || event.type === 'polling';
    return { ...t, changed: true, notify: t.notify || tells };
  }

  switch (event.type) {
    case 'status':
      return unchanged(flow, flow.state !== 'acked', flow.state === 'acked' ? acknowledged(flow) : undefined);

    case 'ack':
      if (flow.state === 'pending')
        return unchanged(flow, false, invalidRequest('nothing to acknowledge yet'));
      if (flow.state === 'acked') return unchanged(flow);
      // Acknowledged: nothing secret is kept but the user code (the token is gone).
      return changedTo(
        { ...rules.finish(flow, 'acked'), secrets: { userCode: flow.secrets.userCode } },
        false,
      );

    case 'cancel':
      if (flow.state !== 'pending') {
        return unchanged(flow, false, invalidRequest(`request ${flow.rid} is already finished`));
      }
      return changedTo(
        rules.finish(flow, 'cancelled', {
          code: 'access_denied',
          description: 'cancelled at the device’s request',
        }),
        true,
      );

    case 'tick':
      // Delivery retries and expiry are handled by the caller and above; a live flow just stays.
      return unchanged(flow, stateRank(flow.state) === 1 && flow.deliveredAt === undefined);

    case 'poll':
      return rules.poll(flow, event.outcome, now);

    case 'polling':
      return rules.polling(flow, now);

    case 'approve':
      return rules.approve(flow, event, now);

    case 'deny':
      if (flow.state !== 'pending') return unchanged(flow, false, codeUsed());
      return changedTo(
        rules.finish(flow, 'denied', {
          code: 'access_denied',
          description: event.description ?? 'the person denied the request',
        }),
        true,
      );

    case 'token':
      if (flow.state !== 'pending')
        return unchanged(flow, false, invalidRequest('the flow is already finished'));
      return changedTo(
        received(rules.finish(flow, 'authorized', undefined, event.token), now, event.refreshable),
        true,
      );

    case 'fail':
      if (flow.state !== 'pending') return unchanged(flow);
      return changedTo(
        rules.finish(flow, failedState(event.code), { code: event.code, description: event.description }),
        true,
      );

    case 'delivered':
      if (stateRank(flow.state) !== 1 || flow.deliveredAt !== undefined) return unchanged(flow);
      return changedTo({ ...flow, deliveredAt: now }, false);
  }
}

/** An authorized flow with the time its token arrived (its `expires_in` counts from then) and whether a grant is kept. */
function received<F extends Flow>(flow: F, now: number, refreshable: boolean | undefined): F {
  return { ...flow, tokenAt: now, ...(refreshable === true && { refreshable: true }) };
}

/** The state an upstream refusal ends a flow in. */
function failedState(code: OAuthErrorCode): FlowState {
  return code === 'access_denied' ? 'denied' : code === 'expired_token' ? 'expired' : 'failed';
}

function applyPoll(flow: RelayFlow, outcome: PollOutcome, now: number): Transition<RelayFlow> {
  const finish = relayRules.finish;
  // The answer is recorded: no poll is outstanding any more.
  const { pollSentAt: _sent, ...answered } = flow;
  switch (outcome.kind) {
    case 'token':
      return changedTo(
        received(finish(flow, 'authorized', undefined, outcome.token), now, outcome.refreshable),
        true,
      );
    case 'authorization_pending': {
      const { failures: _failures, ...rest } = answered;
      return changedTo({ ...rest, nextPollAt: now + flow.interval * 1000 }, false);
    }
    case 'slow_down': {
      // §3.5: "the interval MUST be increased by 5 seconds for this and all subsequent requests" — or, where the
      // upstream names the new interval (GitHub, src/upstream/deviations.ts), to that; never shorter than before.
      const interval =
        outcome.intervalSeconds === undefined
          ? flow.interval + SLOW_DOWN_STEP_SECONDS
          : Math.max(flow.interval, outcome.intervalSeconds);
      const { failures: _failures, ...rest } = answered;
      return changedTo({ ...rest, interval, nextPollAt: now + interval * 1000 }, false);
    }
    case 'access_denied':
      return changedTo(
        finish(flow, 'denied', { code: 'access_denied', description: 'the person denied the request' }),
        true,
      );
    case 'expired_token':
      return changedTo(finish(flow, 'expired', expiredError), true);
    case 'invalid_grant':
      return flow.lostPoll === true
        ? changedTo(finish(flow, 'failed', APPROVAL_LOST), true)
        : changedTo(finish(flow, 'expired', forgottenError), true);
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
      return changedTo({ ...answered, failures, nextPollAt: now + Math.max(backoff, retryAfter) }, false);
    }
  }
}

function acknowledged(flow: Flow): OAuthError {
  return invalidRequest(`request ${flow.rid} is finished and was acknowledged; start a new one`);
}

/**
 * When the scheduler must next visit this flow, or `undefined` for never:
 * - relay, pending: the next poll (a lease after the poll in flight, if any), but never later than just after expiry
 *   (to tell the device);
 * - bridge, pending: just after expiry;
 * - finished and not yet delivered: `now + leaseMs`, a safety net should this instance die before it delivers;
 * - delivered or acknowledged: never.
 */
export function dueAt(flow: Flow, now: number, leaseMs: number): number | undefined {
  if (flow.state === 'pending') {
    const afterExpiry = flow.expiresAt + 1;
    // A poll in flight: look again a lease after it was sent (a takeover, should its instance have stopped).
    const nextPoll =
      flow.mode !== 'device'
        ? undefined
        : flow.pollSentAt !== undefined
          ? flow.pollSentAt + leaseMs
          : flow.nextPollAt;
    return nextPoll === undefined ? afterExpiry : Math.min(nextPoll, afterExpiry);
  }
  if (flow.state !== 'acked' && flow.deliveredAt === undefined) return now + leaseMs;
  return undefined;
}

/**
 * Whether the access token of an authorized flow has run out at `now`: its `expires_in` counted from when the
 * gateway received it (`tokenAt`). A token without `expires_in` never runs out here.
 */
export function tokenExpired(flow: Flow, now: number): boolean {
  const expiresIn = flow.secrets.token?.expires_in;
  if (flow.state !== 'authorized' || expiresIn === undefined || flow.tokenAt === undefined) return false;
  return now >= flow.tokenAt + expiresIn * 1000;
}

/**
 * The error a flow reports to its device at `now`: a finished, unsuccessful flow's own; for an authorized flow whose
 * token ran out while it waited for delivery, `expired_token` — never the dead token — telling the device to refresh
 * (when a grant is kept) or start again.
 */
export function flowError(flow: Flow, now: number): OAuthError | undefined {
  if (flow.state === 'authorized') {
    if (!tokenExpired(flow, now)) return undefined;
    return new OAuthError(
      'expired_token',
      flow.refreshable === true
        ? 'the access token expired before it was delivered; send req/refresh for a fresh one'
        : 'the access token expired before it was delivered; start a new request',
    );
  }
  if (flow.state === 'pending') return undefined;
  if (flow.state === 'acked') return acknowledged(flow);
  const e = flow.error ?? { code: 'server_error', description: 'the request failed' };
  return new OAuthError(e.code, e.description);
}

/** Seconds left, rounded up, never negative (RFC 8628 `expires_in`). */
export function secondsLeft(flow: Flow, now: number): number {
  return Math.max(0, Math.ceil((flow.expiresAt - now) / 1000));
}
