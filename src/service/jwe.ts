/**
 * The device contract (`src/core/protocol.ts`): when a device sent a public `jwk` with `req/authorize`, the token
 * fields travel as a compact JWE encrypted to that key, so the broker (and anything it persists) never sees the
 * token.
 * EC/OKP keys: ECDH-ES; RSA keys: RSA-OAEP-256; content: A256GCM.
 *
 * Every encryption first applies the key rules (`src/core/device-key.ts`), so a key is judged the same way at
 * `req/authorize`, when a result arrives, and on `req/refresh` (docs/security.md, device keys).
 */
import { CompactEncrypt, type JWK, importJWK } from 'jose';
import { deviceKeyProblem, jweAlgorithm } from '../core/device-key.ts';
import { invalidRequest, OAuthError } from '../core/errors.ts';
import type { PublicJwk } from '../core/flow.ts';

/** The JWK without members that are absent (jose's types do not take `undefined` members). */
function toJwk(jwk: PublicJwk): JWK {
  return Object.fromEntries(Object.entries(jwk).filter(([, v]) => v !== undefined)) as JWK;
}

/**
 * What a key that keeps the rules of `src/core/device-key.ts` can still fail at, by key type: only the crypto
 * library can tell that an EC point is off its curve, or that an X25519 agreement gives the all-zero secret
 * (RFC 7748 §6.1; Node's X25519 refuses to derive it).
 */
const CRYPTO_RULE: Readonly<Record<PublicJwk['kty'], string>> = {
  EC: 'the EC point must be on the curve',
  OKP: 'X25519 keys must give a non-zero shared secret (no low-order points)',
  RSA: 'the RSA key could not be used to encrypt',
};

/**
 * Encrypts `fields` to the device's key. Throws {@link OAuthError} `invalid_request` naming the broken rule when the
 * key breaks one (`src/core/device-key.ts`) or the encryption itself fails; nothing else.
 */
export async function encryptForDevice(jwk: PublicJwk, fields: object): Promise<string> {
  const problem = deviceKeyProblem(jwk);
  if (problem !== undefined) throw invalidRequest(`jwk: ${problem}`);
  const alg = jweAlgorithm(jwk.kty);
  try {
    const key = await importJWK(toJwk(jwk), alg);
    return await new CompactEncrypt(new TextEncoder().encode(JSON.stringify(fields)))
      .setProtectedHeader({
        alg,
        enc: 'A256GCM',
        cty: 'json',
        ...(jwk.kid !== undefined && { kid: jwk.kid }),
      })
      .encrypt(key);
  } catch {
    throw invalidRequest(`jwk: ${CRYPTO_RULE[jwk.kty]}`);
  }
}

/**
 * Checks that the gateway will really encrypt to a device's key — by encrypting to it — so a bad key is refused at
 * `req/authorize` and not after approval. Throws `invalid_request` naming the rule.
 */
export async function checkDeviceKey(jwk: PublicJwk): Promise<void> {
  await encryptForDevice(jwk, {});
}

/**
 * The error a device gets when its key fails after the flow started (a key stored by an older gateway, or a
 * failure the checks at `req/authorize` did not foresee), from what {@link encryptForDevice} threw.
 */
export function unusableKey(err: unknown): OAuthError {
  const why = err instanceof OAuthError ? err.description : 'jwk: the encryption failed';
  return invalidRequest(`the device key could not be used (${why}); authorize again with another key`);
}
