/**
 * The one table of what an upstream OAuth `error` means at each place the gateway meets one. Devices only ever see
 * our codes and the fixed descriptions below: upstream bodies and `error_description`s are never passed on.
 */
import type { PollOutcome } from '../core/engine.ts';
import { type OAuthErrorCode, OAuthError, UnavailableError } from '../core/errors.ts';

/** Where an upstream error can arrive. `callback` is the authorization response on the redirect URI. */
export type UpstreamEndpoint =
  'device_authorization' | 'token_poll' | 'callback' | 'code_exchange' | 'refresh' | 'revocation';

/** An error answer that fails the request with one of our codes, or one that means "the upstream is unavailable". */
export type Refusal = { kind: 'error'; code: OAuthErrorCode; description: string } | { kind: 'unavailable' };

/** While polling, RFC 8628 §3.5 errors are flow states rather than failures. */
export type PollMeaning =
  | Refusal
  | { kind: 'authorization_pending' }
  | { kind: 'slow_down' }
  | { kind: 'access_denied' }
  | { kind: 'expired_token' }
  /** the engine decides what to tell the device: see `PollOutcome` */
  | { kind: 'invalid_grant' };

interface Meanings {
  device_authorization: Refusal;
  token_poll: PollMeaning;
  callback: Refusal;
  code_exchange: Refusal;
  refresh: Refusal;
  revocation: Refusal;
}

const fail = (code: OAuthErrorCode, description: string): Refusal => ({ kind: 'error', code, description });
const UNAVAILABLE: Refusal = { kind: 'unavailable' };

/** Fixed descriptions shared by several endpoints. */
const SAFE = {
  invalid_scope: 'the identity provider does not allow the requested scope',
  unauthorized_client: 'the identity provider does not accept the gateway as a client for this',
  access_denied: 'the request was denied',
  server_error: 'the identity provider refused the request',
} as const satisfies Partial<Record<OAuthErrorCode, string>>;

const SIGN_IN_DENIED = fail('access_denied', 'the sign-in was denied or cancelled');

/** What an error not listed in {@link TABLE} (or not listed for that endpoint) means. */
const DEFAULTS: Meanings = {
  device_authorization: fail('server_error', SAFE.server_error),
  token_poll: fail('server_error', 'the identity provider refused the token request'),
  callback: fail('server_error', 'the identity provider refused the sign-in'),
  code_exchange: fail('server_error', SAFE.server_error),
  refresh: fail('server_error', SAFE.server_error),
  // RFC 7009 §2.2.1: the revocation failed; nobody but the log sees this
  revocation: fail('server_error', 'the identity provider refused to revoke the token'),
};

/**
 * OAuth `error` → its meaning per endpoint (RFC 6749 §4.1.2.1 and §5.2, RFC 8628 §3.5, OpenID Connect Core §3.1.2.6).
 * A missing cell falls back to {@link DEFAULTS}.
 */
const TABLE = new Map<string, Partial<Meanings>>([
  ['authorization_pending', { token_poll: { kind: 'authorization_pending' } }],
  ['slow_down', { device_authorization: UNAVAILABLE, token_poll: { kind: 'slow_down' } }],
  ['expired_token', { token_poll: { kind: 'expired_token' } }],
  [
    'access_denied',
    {
      device_authorization: fail('access_denied', SAFE.access_denied),
      token_poll: { kind: 'access_denied' },
      callback: SIGN_IN_DENIED,
      code_exchange: fail('access_denied', SAFE.access_denied),
      refresh: fail('access_denied', SAFE.access_denied),
    },
  ],
  // The grant (device code, code, refresh token) is expired, used or unknown: the flow must start again.
  [
    'invalid_grant',
    {
      // expired, or redeemed by a poll whose answer was lost: the engine tells which it may be (src/core/engine.ts)
      token_poll: { kind: 'invalid_grant' },
      // RFC 6749 §4.1.2: a code is single use
      code_exchange: fail('expired_token', 'the sign-in expired or was already used; start again'),
      refresh: fail('expired_token', 'the authorization expired or was revoked; authorize again'),
    },
  ],
  // The gateway's own client authentication failed; the callback never carries this one (RFC 6749 §4.1.2.1).
  [
    'invalid_client',
    {
      device_authorization: fail('unauthorized_client', SAFE.unauthorized_client),
      token_poll: fail('unauthorized_client', SAFE.unauthorized_client),
      code_exchange: fail('unauthorized_client', SAFE.unauthorized_client),
      refresh: fail('unauthorized_client', SAFE.unauthorized_client),
    },
  ],
  [
    'unauthorized_client',
    {
      device_authorization: fail('unauthorized_client', SAFE.unauthorized_client),
      token_poll: fail('unauthorized_client', SAFE.unauthorized_client),
      callback: fail('unauthorized_client', SAFE.unauthorized_client),
      code_exchange: fail('unauthorized_client', SAFE.unauthorized_client),
      refresh: fail('unauthorized_client', SAFE.unauthorized_client),
    },
  ],
  // Not while polling: the scope was accepted when the device authorization started.
  [
    'invalid_scope',
    {
      device_authorization: fail('invalid_scope', SAFE.invalid_scope),
      callback: fail('invalid_scope', SAFE.invalid_scope),
      code_exchange: fail('invalid_scope', SAFE.invalid_scope),
      refresh: fail('invalid_scope', SAFE.invalid_scope),
    },
  ],
  [
    'temporarily_unavailable',
    {
      device_authorization: UNAVAILABLE,
      token_poll: UNAVAILABLE,
      callback: UNAVAILABLE,
      code_exchange: UNAVAILABLE,
      refresh: UNAVAILABLE,
    },
  ],
  // OpenID Connect Core §3.1.2.6: the person could not or would not sign in.
  ['login_required', { callback: SIGN_IN_DENIED }],
  ['consent_required', { callback: SIGN_IN_DENIED }],
  ['interaction_required', { callback: SIGN_IN_DENIED }],
  ['account_selection_required', { callback: SIGN_IN_DENIED }],
]);

/** What the upstream's OAuth `error` means at `endpoint` (unknown errors included). */
export function meaning<E extends UpstreamEndpoint>(endpoint: E, error: string): Meanings[E] {
  return TABLE.get(error)?.[endpoint] ?? DEFAULTS[endpoint];
}

/**
 * What a 200 that fails oauth4webapi's checks (no `access_token`, an unknown `token_type`, a bad ID token) means: a
 * failed flow at the token endpoint, where asking again will not help; at the device authorization endpoint the
 * gateway has not promised the device anything yet, so it answers "unavailable, try again".
 */
export const UNUSABLE_ANSWER: Record<Exclude<UpstreamEndpoint, 'callback'>, Refusal> = {
  device_authorization: UNAVAILABLE,
  token_poll: fail('server_error', 'the identity provider sent an invalid token response'),
  code_exchange: fail('server_error', 'the identity provider sent an invalid token response'),
  refresh: fail('server_error', 'the identity provider sent an invalid token response'),
  revocation: fail('server_error', 'the identity provider sent an invalid revocation response'),
};

/** A {@link Refusal} as the error to throw; `reason` says why the upstream counts as unavailable (logs only). */
export function refusalError(refusal: Refusal, reason: string): OAuthError | UnavailableError {
  return refusal.kind === 'error'
    ? new OAuthError(refusal.code, refusal.description)
    : new UnavailableError('upstream', reason);
}

/** A token poll's meaning as an RFC 8628 §3.5 outcome. */
export function asPollOutcome(m: PollMeaning): PollOutcome {
  // a copy: the table's entries are shared
  return m.kind === 'unavailable' ? { kind: 'unreachable' } : { ...m };
}
