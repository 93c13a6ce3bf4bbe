/**
 * How the gateway authenticates at the upstream (RFC 6749 §2.3.1, OpenID Connect Core §9): oauth4webapi's client
 * authentication for the configured method. Providers differ in what they accept — Google only `client_secret_post`,
 * Glewlwyd's Basic check does not URL-decode (RFC 6749 §2.3.1 requires the encoding), Entra ID, Okta and Keycloak
 * recommend `private_key_jwt` — so the method is the operator's choice (docs/upstreams.md).
 */
import { type JsonWebKey, webcrypto } from 'node:crypto';
import * as oauth from 'oauth4webapi';

export type ClientAuthMethod = 'client_secret_basic' | 'client_secret_post' | 'none' | 'private_key_jwt';

/** A private signing key as the configuration read it (src/config/client-key.ts). */
export interface SigningKey {
  readonly jwk: JsonWebKey;
  readonly alg: string;
  readonly kid?: string;
  /** the certificate thumbprint Entra ID finds the registered certificate by */
  readonly x5tS256?: string;
}

/** The credentials of one method; ./oauth.ts builds this from the options. */
export type ClientCredentials =
  | { method: 'client_secret_basic' | 'client_secret_post'; secret: string }
  | { method: 'none' }
  | { method: 'private_key_jwt'; key: SigningKey };

/** oauth4webapi's client authentication for `c`. */
export function clientAuth(c: ClientCredentials): oauth.ClientAuth {
  switch (c.method) {
    case 'client_secret_basic':
      return oauth.ClientSecretBasic(c.secret);
    case 'client_secret_post':
      return oauth.ClientSecretPost(c.secret);
    case 'none':
      return oauth.None();
    case 'private_key_jwt':
      return privateKeyJwt(c.key);
  }
}

/**
 * `private_key_jwt` (RFC 7523 §2.2). The key becomes a `CryptoKey` on first use (WebCrypto's import is asynchronous,
 * building the client is not). The assertion's `aud` is the token endpoint, which RFC 7523 §3 allows and Entra ID and
 * Okta require (oauth4webapi's default, the issuer, is refused there); Keycloak and node-oidc-provider accept both.
 */
function privateKeyJwt(k: SigningKey): oauth.ClientAuth {
  let imported: Promise<webcrypto.CryptoKey> | undefined;
  return async (as, client, body, headers) => {
    imported ??= webcrypto.subtle.importKey('jwk', k.jwk, importParams(k.alg), false, ['sign']);
    const key = await imported;
    const auth = oauth.PrivateKeyJwt(k.kid === undefined ? key : { key, kid: k.kid }, {
      [oauth.modifyAssertion]: (header, payload) => {
        if (k.x5tS256 !== undefined) header['x5t#S256'] = k.x5tS256;
        payload.aud = as.token_endpoint ?? as.issuer;
      },
    });
    await auth(as, client, body, headers);
  };
}

/** WebCrypto import parameters for a JWS algorithm the configuration picked (src/config/client-key.ts). */
function importParams(
  alg: string,
): webcrypto.RsaHashedImportParams | webcrypto.EcKeyImportParams | webcrypto.Algorithm {
  switch (alg) {
    case 'RS256':
      return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
    case 'ES256':
      return { name: 'ECDSA', namedCurve: 'P-256' };
    case 'ES384':
      return { name: 'ECDSA', namedCurve: 'P-384' };
    case 'ES512':
      return { name: 'ECDSA', namedCurve: 'P-521' };
    default:
      return { name: 'Ed25519' };
  }
}
