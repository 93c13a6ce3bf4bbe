/**
 * Which device keys the gateway encrypts to (the `jwk` of `req/authorize`, README "The device contract"): the rules
 * that need no crypto library. `src/service/jwe.ts` applies them before every encryption and adds the checks that
 * do (the EC point on its curve, a non-zero X25519 shared secret, a test encryption).
 */
import type { PublicJwk } from './flow.ts';

/** The JWE `alg` the gateway encrypts with: RSA-OAEP-256 for RSA (RFC 7518 §4.3), ECDH-ES for EC/OKP (§4.6). */
export function jweAlgorithm(kty: PublicJwk['kty']): 'ECDH-ES' | 'RSA-OAEP-256' {
  return kty === 'RSA' ? 'RSA-OAEP-256' : 'ECDH-ES';
}

/** RSA moduli below this are refused (RFC 7518 §4.3: "a key of size 2048 bits or larger MUST be used"). */
export const RSA_MIN_BITS = 2048;
/** RSA moduli above this are refused: nothing gains from them, and each encryption would cost the gateway more. */
export const RSA_MAX_BITS = 8192;
/**
 * The one public exponent accepted, 65537 as base64url. Small exponents invite attacks on unpadded or related
 * messages, and e = 1 makes "encryption" the identity: the JWE's key would travel in the clear.
 */
const RSA_EXPONENT = 'AQAB';

/** Coordinate length in bytes per curve (RFC 7518 §6.2.1.2: x and y are full-length octet strings). */
const EC_COORDINATE_BYTES: Readonly<Record<string, number>> = { 'P-256': 32, 'P-384': 48, 'P-521': 66 };
const X25519_BYTES = 32;

/** The X25519 field prime, 2^255 − 19 (RFC 7748 §4.1). */
const X25519_P = 2n ** 255n - 19n;
/**
 * The u-coordinates of the points of small order on Curve25519 and its twist (0, 1, p − 1 and the two points of order
 * 8): an agreement with any of them gives the all-zero shared secret RFC 7748 §6.1 tells implementations to refuse,
 * and an ECDH-ES content key anyone can derive. Every other encoding of them (values ≥ p, the top bit set) reduces
 * to one of these.
 */
const X25519_LOW_ORDER: ReadonlySet<bigint> = new Set([
  0n,
  1n,
  X25519_P - 1n,
  littleEndian(Buffer.from('e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800', 'hex')),
  littleEndian(Buffer.from('5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157', 'hex')),
]);

function littleEndian(bytes: Uint8Array): bigint {
  let value = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[i] ?? 0);
  return value;
}

/** The bytes of a base64url member (RFC 7515 §2: no padding), or `undefined` unless it is canonical base64url. */
function octets(value: string | undefined): Buffer | undefined {
  if (value === undefined || !/^[A-Za-z0-9_-]+$/.test(value)) return undefined;
  const bytes = Buffer.from(value, 'base64url');
  return bytes.toString('base64url') === value ? bytes : undefined;
}

function bitLength(bytes: Buffer): number {
  const first = bytes.findIndex((b) => b !== 0);
  if (first < 0) return 0;
  return (bytes.length - first - 1) * 8 + (32 - Math.clz32(bytes[first] ?? 0));
}

function rsaProblem(jwk: PublicJwk): string | undefined {
  if (jwk.crv !== undefined || jwk.x !== undefined || jwk.y !== undefined) {
    return 'RSA keys have no crv, x or y';
  }
  const n = octets(jwk.n);
  if (n === undefined || jwk.e === undefined) return 'RSA keys need n and e (base64url)';
  if (jwk.e !== RSA_EXPONENT) return 'RSA keys must have the public exponent e = 65537 ("AQAB")';
  const bits = bitLength(n);
  if (bits < RSA_MIN_BITS) return `RSA keys must be at least ${RSA_MIN_BITS} bits`;
  if (bits > RSA_MAX_BITS) return `RSA keys must be at most ${RSA_MAX_BITS} bits`;
  return undefined;
}

function ecProblem(jwk: PublicJwk): string | undefined {
  const size = jwk.crv === undefined ? undefined : EC_COORDINATE_BYTES[jwk.crv];
  if (size === undefined) return 'EC keys must be on P-256, P-384 or P-521';
  if (jwk.n !== undefined || jwk.e !== undefined) return 'EC keys have no n or e';
  const x = octets(jwk.x);
  const y = octets(jwk.y);
  if (x?.length !== size || y?.length !== size) {
    return `x and y of a ${jwk.crv} key must be ${size}-byte base64url values`;
  }
  return undefined;
}

function okpProblem(jwk: PublicJwk): string | undefined {
  if (jwk.crv !== 'X25519') return 'OKP keys must be X25519 (the gateway encrypts; Ed25519 keys only sign)';
  if (jwk.y !== undefined || jwk.n !== undefined || jwk.e !== undefined) return 'X25519 keys have only x';
  const x = octets(jwk.x);
  if (x?.length !== X25519_BYTES) return `x of an X25519 key must be a ${X25519_BYTES}-byte base64url value`;
  // RFC 7748 §5: the top bit of the last byte is masked, then the value is taken modulo p.
  const u = (littleEndian(x) & (2n ** 255n - 1n)) % X25519_P;
  if (X25519_LOW_ORDER.has(u)) return 'X25519 keys must not be low-order points';
  return undefined;
}

/**
 * The first rule `jwk` breaks, in words a device developer can act on, or `undefined` when it keeps them all:
 * RSA of 2048–8192 bits with e = 65537; EC on P-256/P-384/P-521 with full-length coordinates; X25519 that is not a
 * low-order point; `alg`, when given, the one the gateway encrypts with. Private members never get this far (the
 * request schema refuses them).
 */
export function deviceKeyProblem(jwk: PublicJwk): string | undefined {
  const alg = jweAlgorithm(jwk.kty);
  if (jwk.alg !== undefined && jwk.alg !== alg) {
    return `alg of a ${jwk.kty} key must be ${alg} (the algorithm the gateway encrypts with) or absent`;
  }
  switch (jwk.kty) {
    case 'RSA':
      return rsaProblem(jwk);
    case 'EC':
      return ecProblem(jwk);
    case 'OKP':
      return okpProblem(jwk);
  }
}
