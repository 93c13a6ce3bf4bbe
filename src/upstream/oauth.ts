/**
 * The upstream OAuth client. oauth4webapi does every exchange (discovery, RFC 8628 device authorization and token
 * polling, authorization code + PKCE) and checks every answer; this module only picks the mode, adds deadlines, and
 * maps answers to the gateway's errors as data:
 * - an OAuth error answer becomes an `OAuthError` (or a `PollOutcome`) with one of our codes and a fixed, safe
 *   description: upstream bodies and `error_description`s are never passed on;
 * - a timeout, connection error, 5xx, 429 or non-OAuth answer (HTML, a redirect, a malformed body) means the upstream is
 *   unavailable: `UnavailableError('upstream')`, or `{kind: 'unreachable'}` when polling.
 * Device codes, codes, verifiers and tokens are never logged.
 */
import * as oauth from 'oauth4webapi';
import type { Logger } from 'pino';
import type { PollOutcome } from '../core/engine.ts';
import { type OAuthErrorCode, OAuthError, UnavailableError } from '../core/errors.ts';
import type { TokenSet } from '../core/flow.ts';
import { type UpstreamFetch, boundedFetch, fromFetch } from './http.ts';
import type {
  BridgeUpstream,
  DeviceAuthorization,
  RelayUpstream,
  Upstream,
  UpstreamStatus,
} from './types.ts';

export interface UpstreamOptions {
  issuer: string;
  clientId: string;
  /** set: `client_secret_basic`; unset: a public client (`none`) */
  clientSecret?: string;
  mode: 'device' | 'authorization_code';
  /** bridge mode: the exact redirect URI registered at the upstream */
  redirectUri: string;
  /** deadline for one HTTP exchange, body included (ms) */
  timeoutMs: number;
  /** allow plain-http endpoints (oauth4webapi `[allowInsecureRequests]`) */
  allowInsecure: boolean;
  log: Logger;
  /** poll interval (s) when the upstream sends none; default 5 (RFC 8628 §3.2) */
  defaultIntervalSeconds?: number;
  /** replaces the built-in HTTP client (undici, no redirects, 256 KiB cap); redirects are never followed */
  fetch?: typeof fetch;
}

export interface UpstreamClient {
  /** The relay or bridge interface, by `mode`. Its methods throw `UnavailableError` until {@link discover} succeeded. */
  readonly upstream: Upstream;
  /**
   * Fetches the upstream's metadata (OpenID Connect discovery, else RFC 8414) and checks that it has what the mode
   * needs. Throws `UnavailableError('upstream')` with a readable reason; may be called again to retry.
   */
  discover(): Promise<void>;
  /** Whether discovery succeeded; the detail names the endpoints or the last discovery error. */
  status(): UpstreamStatus;
}

/** RFC 8628 §3.2: the poll interval when the upstream sends none. */
export const DEFAULT_INTERVAL_S = 5;
/** Longest poll interval accepted from an upstream; longer ones are cut to this. */
export const MAX_INTERVAL_S = 60;
/** Longest device-code lifetime accepted from an upstream; longer ones are cut to this. */
export const MAX_EXPIRES_IN_S = 1800;
/** Longest `Retry-After` honoured. */
export const MAX_RETRY_AFTER_S = 3600;
/** Sanity limits on device authorization values (they travel to devices over MQTT, 4 KiB per message). */
const MAX_USER_CODE_LENGTH = 64;
const MAX_URI_LENGTH = 1024;
const MAX_DEVICE_CODE_LENGTH = 4096;

/**
 * Builds the upstream client for one issuer and mode. Nothing is fetched until {@link UpstreamClient.discover}.
 */
export function createUpstream(o: UpstreamOptions): UpstreamClient {
  const issuer = new URL(o.issuer);
  const client: oauth.Client = { client_id: o.clientId };
  const clientAuth = o.clientSecret !== undefined ? oauth.ClientSecretBasic(o.clientSecret) : oauth.None();
  const httpClient: UpstreamFetch = o.fetch !== undefined ? fromFetch(o.fetch) : boundedFetch();
  const log = o.log;
  let as: oauth.AuthorizationServer | undefined;
  let lastError: string | undefined;

  /** Options for one oauth4webapi request: a fresh deadline each time. */
  const http = () => ({
    signal: AbortSignal.timeout(o.timeoutMs),
    [oauth.customFetch]: httpClient,
    ...(o.allowInsecure && { [oauth.allowInsecureRequests]: true }),
  });

  const ready = (): oauth.AuthorizationServer => {
    if (as === undefined) {
      throw new UnavailableError(
        'upstream',
        `the upstream ${o.issuer} is not discovered yet${lastError ? `: ${lastError}` : ''}`,
      );
    }
    return as;
  };

  async function fetchMetadata(): Promise<oauth.AuthorizationServer> {
    const failures: string[] = [];
    // OpenID Connect Discovery first, then RFC 8414 (DESIGN §1).
    for (const algorithm of ['oidc', 'oauth2'] as const) {
      try {
        const res = await oauth.discoveryRequest(issuer, { ...http(), algorithm });
        return await oauth.processDiscoveryResponse(issuer, res);
      } catch (err) {
        failures.push(
          `${algorithm === 'oidc' ? 'openid-configuration' : 'oauth-authorization-server'}: ${describe(err)}`,
        );
      }
    }
    throw new Error(`no usable metadata (${failures.join('; ')})`);
  }

  function checkMetadata(meta: oauth.AuthorizationServer): void {
    const needed =
      o.mode === 'device'
        ? (['device_authorization_endpoint', 'token_endpoint'] as const)
        : (['authorization_endpoint', 'token_endpoint'] as const);
    for (const name of needed) {
      const value = meta[name];
      if (typeof value !== 'string' || !URL.canParse(value)) {
        throw new Error(`the upstream has no ${name}, which ${o.mode} mode needs`);
      }
      const protocol = new URL(value).protocol;
      if (protocol !== 'https:' && !(protocol === 'http:' && o.allowInsecure)) {
        throw new Error(`the upstream's ${name} is not https`);
      }
    }
    if (o.mode === 'authorization_code') {
      // RFC 9700 §2.1.1: PKCE with S256; a server that lists methods must list S256 (no downgrade to `plain`).
      const methods = meta.code_challenge_methods_supported;
      if (Array.isArray(methods) && !methods.includes('S256')) {
        throw new Error('the upstream does not support PKCE with S256');
      }
    }
  }

  async function discover(): Promise<void> {
    try {
      const meta = await fetchMetadata();
      checkMetadata(meta);
      as = meta;
      lastError = undefined;
      log.info({ issuer: meta.issuer, mode: o.mode }, 'upstream discovered');
    } catch (err) {
      lastError = describe(err);
      throw new UnavailableError('upstream', `discovery of ${o.issuer} failed: ${lastError}`, { cause: err });
    }
  }

  function status(): UpstreamStatus {
    if (as === undefined) return { ready: false, detail: lastError ?? 'discovery has not finished yet' };
    const endpoints =
      o.mode === 'device'
        ? `device_authorization_endpoint ${as.device_authorization_endpoint}, token_endpoint ${as.token_endpoint}`
        : `authorization_endpoint ${as.authorization_endpoint}, token_endpoint ${as.token_endpoint}`;
    return { ready: true, detail: `${as.issuer} (${o.mode}: ${endpoints})` };
  }

  /** RFC 6749 §6 refresh, shared by both modes. */
  async function refresh(refreshToken: string): Promise<TokenSet> {
    const meta = ready();
    let res: Response;
    try {
      res = await oauth.refreshTokenGrantRequest(meta, client, clientAuth, refreshToken, http());
    } catch (err) {
      throw unavailable('refresh request failed', err);
    }
    if (res.status === 429 || res.status >= 500) {
      await discard(res);
      throw new UnavailableError('upstream', `the token endpoint answered HTTP ${res.status}`);
    }
    try {
      return tokenSet(await oauth.processRefreshTokenResponse(meta, client, res));
    } catch (err) {
      if (err instanceof oauth.ResponseBodyError) {
        log.warn({ error: err.error, status: err.status }, 'the upstream refused a refresh');
        throw err.error === 'invalid_grant'
          ? new OAuthError('expired_token', 'the authorization expired or was revoked; authorize again')
          : exchangeError(err.error);
      }
      if (err instanceof oauth.WWWAuthenticateChallengeError) throw exchangeError('invalid_client');
      if (res.status === 200 && isOAuthCheckFailure(err)) {
        throw new OAuthError('server_error', 'the identity provider sent an invalid token response');
      }
      throw unavailable('invalid refresh response', err);
    }
  }

  const relay: RelayUpstream = {
    kind: 'device',
    refresh,

    async startDeviceAuthorization(scope) {
      const meta = ready();
      let res: Response;
      try {
        res = await oauth.deviceAuthorizationRequest(
          meta,
          client,
          clientAuth,
          scope === '' ? {} : { scope },
          http(),
        );
      } catch (err) {
        throw unavailable('device authorization request failed', err);
      }
      if (res.status === 429 || res.status >= 500) {
        await discard(res);
        throw new UnavailableError(
          'upstream',
          `the device authorization endpoint answered HTTP ${res.status}`,
        );
      }
      let da: oauth.DeviceAuthorizationResponse;
      try {
        da = await oauth.processDeviceAuthorizationResponse(meta, client, await withDeviceAliases(res));
      } catch (err) {
        if (err instanceof oauth.ResponseBodyError) {
          log.warn({ error: err.error, status: err.status }, 'the upstream refused a device authorization');
          throw requestError(err.error);
        }
        if (err instanceof oauth.WWWAuthenticateChallengeError) {
          log.warn({ status: err.status }, 'the upstream refused the gateway’s client authentication');
          throw requestError('invalid_client');
        }
        throw unavailable('invalid device authorization response', err);
      }
      return deviceAuthorization(da, o.defaultIntervalSeconds);
    },

    async pollDeviceToken(deviceCode) {
      if (as === undefined) return { kind: 'unreachable' };
      let res: Response;
      try {
        res = await oauth.deviceCodeGrantRequest(as, client, clientAuth, deviceCode, http());
      } catch (err) {
        log.debug({ err: describe(err) }, 'device token request failed');
        return { kind: 'unreachable' };
      }
      if (res.status === 429 || res.status >= 500) {
        await discard(res);
        const retryAfterSeconds = retryAfter(res);
        return retryAfterSeconds === undefined
          ? { kind: 'unreachable' }
          : { kind: 'unreachable', retryAfterSeconds };
      }
      try {
        return { kind: 'token', token: tokenSet(await oauth.processDeviceCodeResponse(as, client, res)) };
      } catch (err) {
        if (err instanceof oauth.ResponseBodyError) return pollError(err.error);
        if (err instanceof oauth.WWWAuthenticateChallengeError) return pollError('invalid_client');
        if (res.status === 200 && isOAuthCheckFailure(err)) {
          // The upstream answered 200 but not with a usable token: retrying will not help.
          log.warn({ err: describe(err) }, 'the upstream sent an unusable token response');
          return {
            kind: 'error',
            code: 'server_error',
            description: 'the identity provider sent an invalid token response',
          };
        }
        log.debug({ status: res.status, err: describe(err) }, 'unexpected device token response');
        await discard(res);
        return { kind: 'unreachable' };
      }
    },
  };

  const bridge: BridgeUpstream = {
    kind: 'authorization_code',
    refresh,

    async authorizationRequest({ state, scope }) {
      const url = new URL(ready().authorization_endpoint!);
      const codeVerifier = oauth.generateRandomCodeVerifier();
      const codeChallenge = await oauth.calculatePKCECodeChallenge(codeVerifier);
      const nonce = scope.split(' ').includes('openid') ? oauth.generateRandomNonce() : undefined;
      const p = url.searchParams;
      p.set('response_type', 'code');
      p.set('client_id', o.clientId);
      p.set('redirect_uri', o.redirectUri);
      if (scope !== '') p.set('scope', scope);
      p.set('state', state);
      p.set('code_challenge', codeChallenge);
      p.set('code_challenge_method', 'S256');
      if (nonce !== undefined) p.set('nonce', nonce);
      return { url: url.href, codeVerifier, ...(nonce !== undefined && { nonce }) };
    },

    async exchangeCode(callback, expected) {
      const meta = ready();
      let params: URLSearchParams;
      try {
        // RFC 9207 `iss` (when the server says it sends it) and `state` first, then `error`.
        params = oauth.validateAuthResponse(meta, client, callback, expected.state);
      } catch (err) {
        if (err instanceof oauth.AuthorizationResponseError) throw callbackError(err.error);
        throw new OAuthError('invalid_request', 'the sign-in response does not belong to this request');
      }
      let res: Response;
      try {
        res = await oauth.authorizationCodeGrantRequest(
          meta,
          client,
          clientAuth,
          params,
          o.redirectUri,
          expected.codeVerifier,
          http(),
        );
      } catch (err) {
        throw unavailable('code exchange failed', err);
      }
      if (res.status === 429 || res.status >= 500) {
        await discard(res);
        throw new UnavailableError('upstream', `the token endpoint answered HTTP ${res.status}`);
      }
      // The nonce is checked when the answer carries an ID token (an OpenID provider); a plain OAuth 2 server that
      // ignored `openid` sends none, and then an ID token must not carry a nonce either.
      const withIdToken = expected.nonce !== undefined && (await hasIdToken(res));
      try {
        const t = await oauth.processAuthorizationCodeResponse(
          meta,
          client,
          res,
          withIdToken ? { expectedNonce: expected.nonce! } : { expectedNonce: oauth.expectNoNonce },
        );
        return tokenSet(t);
      } catch (err) {
        if (err instanceof oauth.ResponseBodyError) {
          log.warn({ error: err.error, status: err.status }, 'the upstream refused a code exchange');
          throw exchangeError(err.error);
        }
        if (err instanceof oauth.WWWAuthenticateChallengeError) throw exchangeError('invalid_client');
        if (res.status === 200 && isOAuthCheckFailure(err)) {
          log.warn({ err: describe(err) }, 'the upstream sent an unusable token response');
          throw new OAuthError('server_error', 'the identity provider sent an invalid token response');
        }
        throw unavailable('invalid token response', err);
      }
    },
  };

  return {
    upstream: o.mode === 'device' ? relay : bridge,
    discover,
    status,
  };
}

/**
 * Google answers `verification_url` instead of RFC 8628's `verification_uri`; accepted only when the standard name is
 * absent. A non-positive `interval` is dropped (the default applies) instead of failing the whole answer.
 */
async function withDeviceAliases(res: Response): Promise<Response> {
  if (res.status !== 200) return res;
  let body: unknown;
  try {
    body = await res.clone().json();
  } catch {
    return res; // oauth4webapi reports it
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return res;
  const json = body as Record<string, unknown>;
  let changed = false;
  if (json.verification_uri === undefined && typeof json.verification_url === 'string') {
    json.verification_uri = json.verification_url;
    changed = true;
  }
  if (typeof json.interval === 'number' && json.interval <= 0) {
    delete json.interval;
    changed = true;
  }
  if (!changed) return res;
  await discard(res);
  return new Response(JSON.stringify(json), { status: res.status, headers: res.headers });
}

/** RFC 8628 §3.2 values, checked and clamped. */
function deviceAuthorization(
  da: oauth.DeviceAuthorizationResponse,
  defaultInterval: number = DEFAULT_INTERVAL_S,
): DeviceAuthorization {
  const expiresIn = Math.floor(da.expires_in);
  if (!(expiresIn >= 1))
    throw new UnavailableError('upstream', 'the device authorization response has no usable expires_in');
  const interval =
    da.interval === undefined || da.interval < 1
      ? defaultInterval
      : Math.min(MAX_INTERVAL_S, Math.ceil(da.interval));
  if (
    da.user_code.length === 0 ||
    da.user_code.length > MAX_USER_CODE_LENGTH ||
    hasControlChars(da.user_code)
  ) {
    throw new UnavailableError('upstream', 'the device authorization response has an unusable user_code');
  }
  if (da.device_code.length === 0 || da.device_code.length > MAX_DEVICE_CODE_LENGTH) {
    throw new UnavailableError('upstream', 'the device authorization response has an unusable device_code');
  }
  if (!isWebUrl(da.verification_uri)) {
    throw new UnavailableError(
      'upstream',
      'the device authorization response has an unusable verification_uri',
    );
  }
  const result: DeviceAuthorization = {
    deviceCode: da.device_code,
    userCode: da.user_code,
    verificationUri: da.verification_uri,
    expiresIn: Math.min(expiresIn, MAX_EXPIRES_IN_S),
    interval,
  };
  if (da.verification_uri_complete !== undefined && isWebUrl(da.verification_uri_complete)) {
    result.verificationUriComplete = da.verification_uri_complete;
  }
  return result;
}

function hasControlChars(value: string): boolean {
  for (let i = 0; i < value.length; i++)
    if (value.charCodeAt(i) < 0x20 || value.charCodeAt(i) === 0x7f) return true;
  return false;
}

function isWebUrl(value: string): boolean {
  return value.length <= MAX_URI_LENGTH && URL.canParse(value) && /^https?:$/.test(new URL(value).protocol);
}

/** RFC 6749 §5.1 members the gateway keeps. */
function tokenSet(t: oauth.TokenEndpointResponse): TokenSet {
  const token: TokenSet = {
    access_token: t.access_token,
    // oauth4webapi lowercases the (case-insensitive) type; devices get the RFC spelling back.
    token_type: t.token_type === 'bearer' ? 'Bearer' : t.token_type === 'dpop' ? 'DPoP' : t.token_type,
  };
  if (typeof t.expires_in === 'number' && Number.isFinite(t.expires_in) && t.expires_in >= 0) {
    token.expires_in = Math.floor(t.expires_in);
  }
  if (typeof t.scope === 'string') token.scope = t.scope;
  if (typeof t.id_token === 'string') token.id_token = t.id_token;
  if (typeof t.refresh_token === 'string') token.refresh_token = t.refresh_token;
  return token;
}

/** RFC 8628 §3.5 token endpoint errors while polling. */
function pollError(error: string): PollOutcome {
  switch (error) {
    case 'authorization_pending':
      return { kind: 'authorization_pending' };
    case 'slow_down':
      return { kind: 'slow_down' };
    case 'access_denied':
      return { kind: 'access_denied' };
    case 'expired_token':
      return { kind: 'expired_token' };
    case 'invalid_grant':
      return {
        kind: 'error',
        code: 'expired_token',
        description: 'the identity provider no longer knows this request',
      };
    case 'invalid_client':
    case 'unauthorized_client':
      return { kind: 'error', code: 'unauthorized_client', description: SAFE.unauthorized_client };
    case 'temporarily_unavailable':
      return { kind: 'unreachable' };
    default:
      return {
        kind: 'error',
        code: 'server_error',
        description: 'the identity provider refused the token request',
      };
  }
}

/** Fixed descriptions: nothing the upstream wrote reaches a device. */
const SAFE = {
  invalid_scope: 'the identity provider does not allow the requested scope',
  unauthorized_client: 'the identity provider does not accept the gateway as a client for this',
  access_denied: 'the request was denied',
  server_error: 'the identity provider refused the request',
} as const satisfies Partial<Record<OAuthErrorCode, string>>;

/** Device authorization endpoint errors (RFC 8628 §3.2, RFC 6749 §5.2). */
function requestError(error: string): OAuthError | UnavailableError {
  switch (error) {
    case 'invalid_scope':
      return new OAuthError('invalid_scope', SAFE.invalid_scope);
    case 'invalid_client':
    case 'unauthorized_client':
      return new OAuthError('unauthorized_client', SAFE.unauthorized_client);
    case 'access_denied':
      return new OAuthError('access_denied', SAFE.access_denied);
    case 'slow_down':
    case 'temporarily_unavailable':
      return new UnavailableError('upstream', `the upstream answered ${error}`);
    default:
      return new OAuthError('server_error', SAFE.server_error);
  }
}

/** Authorization response errors (RFC 6749 §4.1.2.1; OpenID Connect Core §3.1.2.6). */
function callbackError(error: string): OAuthError | UnavailableError {
  switch (error) {
    case 'access_denied':
    case 'login_required':
    case 'consent_required':
    case 'interaction_required':
    case 'account_selection_required':
      return new OAuthError('access_denied', 'the sign-in was denied or cancelled');
    case 'invalid_scope':
      return new OAuthError('invalid_scope', SAFE.invalid_scope);
    case 'unauthorized_client':
      return new OAuthError('unauthorized_client', SAFE.unauthorized_client);
    case 'temporarily_unavailable':
      return new UnavailableError('upstream', 'the upstream answered temporarily_unavailable');
    default:
      return new OAuthError('server_error', 'the identity provider refused the sign-in');
  }
}

/** Token endpoint errors of the code exchange (RFC 6749 §5.2). */
function exchangeError(error: string): OAuthError | UnavailableError {
  switch (error) {
    case 'invalid_grant':
      // expired, already used, or not issued to us: the sign-in must start again (RFC 6749 §4.1.2: single use)
      return new OAuthError('expired_token', 'the sign-in expired or was already used; start again');
    case 'invalid_client':
    case 'unauthorized_client':
      return new OAuthError('unauthorized_client', SAFE.unauthorized_client);
    case 'invalid_scope':
      return new OAuthError('invalid_scope', SAFE.invalid_scope);
    case 'access_denied':
      return new OAuthError('access_denied', SAFE.access_denied);
    case 'temporarily_unavailable':
      return new UnavailableError('upstream', 'the upstream answered temporarily_unavailable');
    default:
      return new OAuthError('server_error', SAFE.server_error);
  }
}

/** Errors oauth4webapi raises when an answer fails its checks (as opposed to transport errors). */
function isOAuthCheckFailure(err: unknown): boolean {
  return err instanceof oauth.OperationProcessingError || err instanceof oauth.UnsupportedOperationError;
}

function unavailable(what: string, err: unknown): UnavailableError {
  return new UnavailableError('upstream', `${what}: ${describe(err)}`, { cause: err });
}

/** Whether a 200 token response carries an `id_token` (peeks at a copy; the original stays unread). */
async function hasIdToken(res: Response): Promise<boolean> {
  if (res.status !== 200) return false;
  try {
    const body: unknown = await res.clone().json();
    return typeof body === 'object' && body !== null && 'id_token' in body;
  } catch {
    return false;
  }
}

/** `Retry-After` (RFC 9110 §10.2.3) as seconds: delay-seconds or an HTTP date; capped. */
function retryAfter(res: Response): number | undefined {
  const value = res.headers.get('retry-after')?.trim();
  if (value === undefined || value === '') return undefined;
  if (/^\d+$/.test(value)) return Math.min(Number(value), MAX_RETRY_AFTER_S);
  const at = Date.parse(value);
  if (Number.isNaN(at)) return undefined;
  return Math.min(MAX_RETRY_AFTER_S, Math.max(0, Math.ceil((at - Date.now()) / 1000)));
}

async function discard(res: Response): Promise<void> {
  await res.body?.cancel().catch(() => undefined);
}

/** A one-line reason for logs and readiness: never a response body. */
function describe(err: unknown): string {
  if (err instanceof oauth.ResponseBodyError) return `HTTP ${err.status} ${err.error}`;
  if (err instanceof Error) {
    const cause = err.cause instanceof Error ? ` (${err.cause.message})` : '';
    return `${err.message}${cause}`;
  }
  return String(err);
}
