/**
 * What both modes share once the upstream is discovered: the gateway's client at the upstream, the token set the
 * gateway keeps from a token response, the RFC 6749 §6 refresh and the RFC 7009 revocation of a refresh token.
 */
import * as oauth from 'oauth4webapi';
import type { TokenSet } from '../core/flow.ts';
import type { SignIn } from './types.ts';
import type { MetadataSource } from './discovery.ts';
import { rfcTokenType } from './deviations.ts';
import { type HttpContext, exchange, orThrow } from './exchange.ts';

/** Everything a mode's upstream needs to talk to the upstream. */
export interface UpstreamContext extends HttpContext {
  readonly client: oauth.Client;
  /** `client_secret_basic` when the gateway has a secret, else `none` (a public client) */
  readonly clientAuth: oauth.ClientAuth;
  readonly metadata: MetadataSource;
}

/** RFC 6749 §6: a fresh token set from a refresh token; throws `OAuthError` or `UnavailableError`. */
export async function refresh(ctx: UpstreamContext, refreshToken: string): Promise<TokenSet> {
  const as = ctx.metadata.require();
  const result = await exchange(
    ctx,
    'refresh',
    (options) => oauth.refreshTokenGrantRequest(as, ctx.client, ctx.clientAuth, refreshToken, options),
    async (res) => tokenSet(await oauth.processRefreshTokenResponse(as, ctx.client, res)),
  );
  return orThrow('refresh', result);
}

/**
 * RFC 7009: revokes a refresh token the gateway no longer keeps, when the upstream names a `revocation_endpoint`
 * (RFC 8414 §2); `false` when it names none (nothing was sent). Throws `OAuthError` or `UnavailableError`.
 */
export async function revoke(ctx: UpstreamContext, refreshToken: string): Promise<boolean> {
  const as = ctx.metadata.require();
  if (as.revocation_endpoint === undefined) return false;
  const result = await exchange(
    ctx,
    'revocation',
    (options) =>
      oauth.revocationRequest(as, ctx.client, ctx.clientAuth, refreshToken, {
        ...options,
        additionalParameters: { token_type_hint: 'refresh_token' },
      }),
    (res) => oauth.processRevocationResponse(res),
  );
  orThrow('revocation', result);
  return true;
}

/** A token response oauth4webapi processed (its ID token, if any, validated): the token set and who signed in. */
export function signIn(t: oauth.TokenEndpointResponse): SignIn {
  const subject = oauth.getValidatedIdTokenClaims(t)?.sub;
  return { token: tokenSet(t), ...(subject !== undefined && { subject }) };
}

/** RFC 6749 §5.1 members the gateway keeps. */
export function tokenSet(t: oauth.TokenEndpointResponse): TokenSet {
  const token: TokenSet = {
    access_token: t.access_token,
    token_type: rfcTokenType(t.token_type),
  };
  if (typeof t.expires_in === 'number' && Number.isFinite(t.expires_in) && t.expires_in >= 0) {
    token.expires_in = Math.floor(t.expires_in);
  }
  if (typeof t.scope === 'string') token.scope = t.scope;
  if (typeof t.id_token === 'string') token.id_token = t.id_token;
  if (typeof t.refresh_token === 'string') token.refresh_token = t.refresh_token;
  return token;
}
