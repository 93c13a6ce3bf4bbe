/**
 * `DEVICEGATE_UPSTREAM_CLIENT_KEY`: the private key the gateway signs its `private_key_jwt` client assertions with
 * (RFC 7523 §2.2, OpenID Connect Core §9), read from a PEM or JWK file when the configuration is loaded, so that an
 * unreadable or unusable key is reported with every other configuration problem (./checks.ts).
 */
import { type JsonWebKey, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';

/** A JWS algorithm the key signs with (RFC 7518 §3.1), chosen from the key's type. */
export type ClientKeyAlgorithm = 'RS256' | 'ES256' | 'ES384' | 'ES512' | 'EdDSA';

/** The client's private key as a JWK, with what the assertion's JOSE header names it by. */
export interface ClientKey {
  readonly jwk: JsonWebKey;
  readonly alg: ClientKeyAlgorithm;
  /** the JWK file's `kid`, sent in the assertion's header (the provider finds the registered key by it) */
  readonly kid?: string;
  /** the JWK file's `x5t#S256` (certificate thumbprint), sent in the header: Entra ID finds the certificate by it */
  readonly x5tS256?: string;
}

const CURVES: Readonly<Record<string, ClientKeyAlgorithm>> = {
  'P-256': 'ES256',
  'P-384': 'ES384',
  'P-521': 'ES512',
};

/** Reads the key at `path` (a PKCS#8/PKCS#1/SEC1 PEM or a private JWK). Throws an `Error` naming what is wrong. */
export function readClientKey(path: string): ClientKey {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`cannot read ${path}: ${err instanceof Error ? err.message : String(err)}`, {
      cause: err,
    });
  }
  const json = parseJwk(text);
  let key;
  try {
    key = json === undefined ? createPrivateKey(text) : createPrivateKey({ key: json, format: 'jwk' });
  } catch {
    throw new Error(`${path} holds no private key (a PEM or a JWK with its private members)`);
  }
  const jwk = key.export({ format: 'jwk' });
  const alg = algorithmOf(key.asymmetricKeyType, jwk.crv);
  if (alg === undefined) throw new Error(`${path}: an RSA, EC (P-256/384/521) or Ed25519 key is needed`);
  const kid = json?.kid;
  const x5t = json?.['x5t#S256'];
  return {
    jwk,
    alg,
    ...(typeof kid === 'string' && { kid }),
    ...(typeof x5t === 'string' && { x5tS256: x5t }),
  };
}

/** The file as a JWK object, or `undefined` when it is not JSON (then it should be a PEM). */
function parseJwk(text: string): (JsonWebKey & Record<string, unknown>) | undefined {
  if (!text.trimStart().startsWith('{')) return undefined;
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as JsonWebKey & Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

function algorithmOf(type: string | undefined, crv: string | undefined): ClientKeyAlgorithm | undefined {
  if (type === 'rsa') return 'RS256';
  if (type === 'ed25519') return 'EdDSA';
  if (type === 'ec' && crv !== undefined) return CURVES[crv];
  return undefined;
}
