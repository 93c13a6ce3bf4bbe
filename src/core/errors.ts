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
