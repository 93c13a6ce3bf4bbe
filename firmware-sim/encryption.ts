/**
 * Tokens encrypted to the device (`encrypt: true`): the device sends an ECDH-ES P-256 public key with `req/authorize`
 * and the gateway answers with a compact JWE (ECDH-ES, A256GCM) of the token fields instead of the fields themselves.
 */
import { type CryptoKey, type JWK, compactDecrypt, exportJWK, generateKeyPair } from 'jose';
import type { AuthorizedReply } from '../src/core/protocol.ts';
import type { SimReply } from './replies.ts';

/** The token fields a JWE carries: those of an `authorized` reply (src/core/protocol.ts). */
type TokenFields = Omit<AuthorizedReply, 'v' | 'rid' | 'status' | 'jwe'>;

/** A fresh P-256 key pair; `publicJwk` holds only the public members the gateway accepts. */
export async function generateDeviceKeys(): Promise<{ privateKey: CryptoKey; publicJwk: JWK }> {
  const { privateKey, publicKey } = await generateKeyPair('ECDH-ES', { crv: 'P-256' });
  const jwk = await exportJWK(publicKey);
  return { privateKey, publicJwk: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, y: jwk.y, use: 'enc' } as JWK };
}

/** The reply with the JWE replaced by the token fields it carries, marked `encrypted: true`. Rejects if it does not decrypt. */
export async function decryptReply(reply: AuthorizedReply, jwe: string, key: CryptoKey): Promise<SimReply> {
  const { plaintext } = await compactDecrypt(jwe, key, {
    keyManagementAlgorithms: ['ECDH-ES'],
    contentEncryptionAlgorithms: ['A256GCM'],
  });
  const fields = JSON.parse(new TextDecoder().decode(plaintext)) as TokenFields;
  const { jwe: _jwe, ...rest } = reply;
  return { ...rest, ...fields, v: reply.v, rid: reply.rid, status: 'authorized', encrypted: true };
}
