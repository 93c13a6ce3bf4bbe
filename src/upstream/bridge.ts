/**
 * Bridge mode: the upstream has authorization code + PKCE (RFC 6749 §4.1, RFC 7636). The gateway sends the person's
 * browser to the upstream and exchanges the code that comes back on its redirect URI.
 */
import * as oauth from 'oauth4webapi';
import { OAuthError } from '../core/errors.ts';
import { refusalError, meaning } from './errors.ts';
import { exchange, orThrow } from './exchange.ts';
import { type UpstreamContext, refresh, revoke, signIn } from './tokens.ts';
import type { BridgeUpstream, SignIn } from './types.ts';

/** The bridge upstream; `redirectUri` is the exact redirect URI registered at the upstream. */
export function bridgeUpstream(ctx: UpstreamContext, redirectUri: string): BridgeUpstream {
  return {
    kind: 'authorization_code',
    refresh: (refreshToken) => refresh(ctx, refreshToken),
    revoke: (refreshToken) => revoke(ctx, refreshToken),

    async authorizationRequest({ state, scope }) {
      const url = new URL(ctx.metadata.require().authorization_endpoint!);
      const codeVerifier = oauth.generateRandomCodeVerifier();
      const codeChallenge = await oauth.calculatePKCECodeChallenge(codeVerifier);
      const nonce = scope.split(' ').includes('openid') ? oauth.generateRandomNonce() : undefined;
      const p = url.searchParams;
      p.set('response_type', 'code');
      p.set('client_id', ctx.client.client_id);
      p.set('redirect_uri', redirectUri);
      if (scope !== '') p.set('scope', scope);
      p.set('state', state);
      p.set('code_challenge', codeChallenge);
      p.set('code_challenge_method', 'S256');
      if (nonce !== undefined) p.set('nonce', nonce);
      return { url: url.href, codeVerifier, ...(nonce !== undefined && { nonce }) };
    },

    async exchangeCode(callback, expected) {
      const as = ctx.metadata.require();
      let params: URLSearchParams;
      try {
        // RFC 9207 `iss` (when the server says it sends it) and `state` first, then `error`.
        params = oauth.validateAuthResponse(as, ctx.client, callback, expected.state);
      } catch (err) {
        if (err instanceof oauth.AuthorizationResponseError) {
          throw refusalError(meaning('callback', err.error), `the upstream answered ${err.error}`);
        }
        throw new OAuthError('invalid_request', 'the sign-in response does not belong to this request');
      }
      const result = await exchange(
        ctx,
        'code_exchange',
        (options) =>
          oauth.authorizationCodeGrantRequest(
            as,
            ctx.client,
            ctx.clientAuth,
            params,
            redirectUri,
            expected.codeVerifier,
            options,
          ),
        async (res): Promise<SignIn> => {
          // The nonce is checked when the answer carries an ID token (an OpenID provider); a plain OAuth 2 server
          // that ignored `openid` sends none, and then an ID token must not carry a nonce either.
          const nonce =
            expected.nonce !== undefined && (await hasIdToken(res)) ? expected.nonce : oauth.expectNoNonce;
          return signIn(
            await oauth.processAuthorizationCodeResponse(as, ctx.client, res, { expectedNonce: nonce }),
          );
        },
      );
      return orThrow('code_exchange', result);
    },
  };
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
