/**
 * What the flow service needs from the upstream OAuth server. Implementations use oauth4webapi for every exchange
 * (discovery, RFC 8628 device authorization and token polling, authorization code + PKCE) and never parse OAuth by
 * hand. Secrets in here (device codes, tokens) are never logged.
 */
import type { PollOutcome } from '../core/engine.ts';
import type { TokenSet } from '../core/flow.ts';

/** RFC 8628 §3.2 device authorization response, checked and clamped. */
export interface DeviceAuthorization {
  deviceCode: string;
  userCode: string;
  verificationUri: string;
  verificationUriComplete?: string;
  /** seconds */
  expiresIn: number;
  /** seconds; 5 when the upstream sent none (§3.2) */
  interval: number;
}

/** Bridge mode: what {@link BridgeUpstream.authorizationRequest} hands out. Verifier and nonce are secrets. */
export interface AuthorizationRequest {
  url: string;
  codeVerifier: string;
  nonce?: string;
}

/** Bridge mode: what {@link BridgeUpstream.exchangeCode} yields. */
export interface SignIn {
  /** what the device gets (and the grant the gateway keeps) */
  token: TokenSet;
  /**
   * Who signed in: the `sub` of the ID token oauth4webapi validated (issuer, audience, nonce, expiry), when the answer
   * carried one. Personal data: counted only by keyed hash, never logged.
   */
  subject?: string;
}

/** What both modes offer. */
export interface RefreshingUpstream {
  /**
   * RFC 6749 §6: a fresh token set from a refresh token the gateway keeps. Throws `OAuthError` (`expired_token` when
   * the grant expired or was revoked) or `UnavailableError` when the upstream cannot be reached.
   */
  refresh(refreshToken: string): Promise<TokenSet>;
  /**
   * RFC 7009: revokes a refresh token the gateway drops (its grant was replaced). Resolves `false` without a request
   * when the upstream has no revocation endpoint. Throws `OAuthError` or `UnavailableError`.
   */
  revoke(refreshToken: string): Promise<boolean>;
}

/** Relay mode: the upstream has an RFC 8628 device authorization endpoint. */
export interface RelayUpstream extends RefreshingUpstream {
  readonly kind: 'device';
  /**
   * RFC 8628 §3.1. Throws `OAuthError` for an OAuth error answer (e.g. `invalid_scope`) and `UnavailableError` when the
   * upstream cannot be reached in time.
   */
  startDeviceAuthorization(scope: string): Promise<DeviceAuthorization>;
  /** One RFC 8628 §3.4 token request, mapped to an outcome (§3.5). Never throws for network trouble. */
  pollDeviceToken(deviceCode: string): Promise<PollOutcome>;
}

/** Bridge mode: the upstream has authorization code + PKCE. */
export interface BridgeUpstream extends RefreshingUpstream {
  readonly kind: 'authorization_code';
  /**
   * A fresh authorization request (RFC 6749 §4.1.1 with PKCE S256, RFC 7636): the URL the browser is sent to (with
   * `state` and the exact redirect URI) and the secrets the callback needs back — the PKCE verifier, and an OIDC
   * nonce when `scope` has `openid`. Throws `UnavailableError` until the upstream is discovered.
   */
  authorizationRequest(params: { state: string; scope: string }): Promise<AuthorizationRequest>;
  /**
   * Validates the callback parameters against `state` and exchanges the code (once). Throws `OAuthError` for an
   * error answer (`access_denied` included) and `UnavailableError` when the upstream cannot be reached.
   */
  exchangeCode(
    callback: URLSearchParams,
    expected: { state: string; codeVerifier: string; nonce?: string },
  ): Promise<SignIn>;
}

export type Upstream = RelayUpstream | BridgeUpstream;

export interface UpstreamStatus {
  /** discovery done and the needed endpoints known */
  ready: boolean;
  detail: string;
}
