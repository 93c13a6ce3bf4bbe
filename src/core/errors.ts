/**
 * OAuth errors as data (RFC 6749 §5.2, RFC 8628 §3.5). Every error the gateway sends to a device is one of
 * {@link OAUTH_ERROR_CODES}; the README's error table lists the same codes and a test keeps them in step.
 */

export const OAUTH_ERROR_CODES = [
  'invalid_request',
  'invalid_scope',
  'unauthorized_client',
  'access_denied',
  'expired_token',
  'slow_down',
  'server_error',
  'temporarily_unavailable',
  'reply_too_large',
] as const;

export type OAuthErrorCode = (typeof OAUTH_ERROR_CODES)[number];

/**
 * When a device gets each code: the README's error table and docs/asyncapi.yaml are generated from this
 * (scripts/update-readme.ts, scripts/asyncapi.ts), so the wording lives here once.
 */
export const OAUTH_ERROR_MEANINGS: Readonly<Record<OAuthErrorCode, string>> = {
  invalid_request:
    'the payload is not JSON, too large, has unknown fields or wrong types; an unknown action; ack before a result; a finished or acknowledged `rid`',
  invalid_scope: 'a scope outside `DEVICEGATE_ALLOWED_SCOPES`, or refused by the upstream',
  unauthorized_client:
    "the upstream does not allow the gateway's client this grant; or the device has been revoked (`devicegate devices revoke`, the admin API)",
  access_denied: 'the person denied (or the device cancelled)',
  expired_token:
    'the code expired before approval, or the identity provider no longer knows the request; or the `rid` is unknown (expired and forgotten)',
  slow_down:
    'the device sends requests faster than `DEVICEGATE_DEVICE_RATE` (answered once per `retry_after`; the requests it sends meanwhile get no answer), or already has `DEVICEGATE_MAX_FLOWS_PER_DEVICE` unfinished flows; `retry_after` says when to try again',
  server_error:
    'the upstream failed in a way that will not fix itself; or (relay mode) the person\'s approval may have been used up by a gateway instance that stopped while redeeming it — RFC 8628 device codes are one-time, so the upstream now answers `invalid_grant` — described as "the approval may have been used by a gateway instance that stopped; start a new request": start a new request',
  temporarily_unavailable:
    'Redis, the broker or the upstream is unreachable right now; `retry_after` (seconds) says when to retry',
  reply_too_large:
    "the upstream's token made a reply larger than the maximum MQTT packet size: the embedded broker's `DEVICEGATE_MQTT_MAX_PACKET_SIZE`, or the external broker's (the MQTT 5 CONNACK limit it sent the gateway, e.g. Mosquitto's `max_packet_size`, with `DEVICEGATE_MQTT_PROTOCOL_VERSION=5`). The flow ends with this error, the token is discarded and its refresh token revoked at the upstream (where it has a revocation endpoint). Authorize again with a smaller scope, or have the broker's limit raised; a `jwk` makes the reply larger, not smaller",
};

/** An error that ends up on a device's `res` topic as `{"status":"error", ...}`. */
export class OAuthError extends Error {
  readonly code: OAuthErrorCode;
  /** Text safe to show to the device (never contains secrets or upstream bodies). */
  readonly description: string;
  /** Seconds after which the device may retry (`temporarily_unavailable`, `slow_down`). */
  readonly retryAfter: number | undefined;

  constructor(code: OAuthErrorCode, description: string, retryAfter?: number) {
    super(`${code}: ${description}`);
    this.name = 'OAuthError';
    this.code = code;
    this.description = description;
    this.retryAfter = retryAfter;
  }
}

export const invalidRequest = (d: string) => new OAuthError('invalid_request', d);
export const invalidScope = (d: string) => new OAuthError('invalid_scope', d);
export const slowDown = (d: string, retryAfter: number) => new OAuthError('slow_down', d, retryAfter);
export const unauthorizedClient = (d: string) => new OAuthError('unauthorized_client', d);
export const serverError = (d: string) => new OAuthError('server_error', d);
export const replyTooLarge = (d: string) => new OAuthError('reply_too_large', d);
export const temporarilyUnavailable = (d: string, retryAfter: number) =>
  new OAuthError('temporarily_unavailable', d, retryAfter);

/** Raised by stores and upstream clients when a dependency is down; the caller answers `temporarily_unavailable`. */
export class UnavailableError extends Error {
  readonly dependency: 'store' | 'upstream' | 'broker';
  constructor(dependency: 'store' | 'upstream' | 'broker', message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'UnavailableError';
    this.dependency = dependency;
  }
}
