/**
 * The device contract (`src/core/protocol.ts`): when a device sent a public `jwk` with `req/authorize`, the token
 * fields travel as a compact JWE encrypted to that key, so the broker (and anything it persists) never sees the
 * token.
 * EC/OKP keys: ECDH-ES; RSA keys: RSA-OAEP-256; content: A256GCM.
 */
import { CompactEncrypt, type JWK, importJWK } from 'jose';
import type { PublicJwk } from '../core/flow.ts';
import { invalidRequest } from '../core/errors.ts';

/** The JWK without members that are absent (jose's types do not take `undefined` members). */
function toJwk(jwk: PublicJwk): JWK {
  return Object.fromEntries(Object.entries(jwk).filter(([, v]) => v !== undefined)) as JWK;
}

export function jweAlgorithm(jwk: PublicJwk): 'ECDH-ES' | 'RSA-OAEP-256' {
  return jwk.kty === 'RSA' ? 'RSA-OAEP-256' : 'ECDH-ES';
}

/** Checks that a device's key can be used, so a bad key is refused at `req/authorize` and not after approval. */
export async function checkDeviceKey(jwk: PublicJwk): Promise<void> {
  try {
    await importJWK(toJwk(jwk), jweAlgorithm(jwk));
  } catch {
    throw invalidRequest('jwk is not a usable public key (EC P-256/384/521, X25519 or RSA)');
  }
}

export async function encryptForDevice(jwk: PublicJwk, fields: object): Promise<string> {
  const alg = jweAlgorithm(jwk);
  const key = await importJWK(toJwk(jwk), alg);
  return new CompactEncrypt(new TextEncoder().encode(JSON.stringify(fields)))
    .setProtectedHeader({ alg, enc: 'A256GCM', cty: 'json', ...(jwk.kid !== undefined && { kid: jwk.kid }) })
    .encrypt(key);
}
