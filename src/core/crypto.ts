/**
 * Keys derived from the one gateway secret (HKDF-SHA256), sealing of secrets at rest (AES-256-GCM bound to the flow
 * id), keyed hashes for lookups, and the device credential (README.md, "Device credentials").
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  hkdfSync,
  randomBytes,
  randomFillSync,
  timingSafeEqual,
} from 'node:crypto';

export interface Keys {
  /** Seals flow secrets (tokens, device codes, PKCE verifiers, user codes) before they are stored. */
  seal(plaintext: string, aad: string): string;
  /** Opens what {@link seal} produced with the same `aad`; throws when it was tampered with. */
  open(sealed: string, aad: string): string;
  /** A keyed hash for store lookups (user codes, OAuth `state`), hex. */
  lookupHash(purpose: string, value: string): string;
  /** A key for signing cookies and CSRF tokens. */
  readonly cookieSecret: string;
  /**
   * HMAC-SHA256 of `message` under a key of its own (the scanned links' proofs, src/core/scan-link.ts), truncated to
   * 16 bytes (128 bits).
   */
  linkMac(message: string): Buffer;
}

/** Bytes of IV drawn from the CSPRNG at once; {@link nextIv} hands them out 12 at a time. */
const IV_POOL_BYTES = 12 * 512;
let ivPool = Buffer.alloc(0);
let ivOffset = 0;

/**
 * A fresh random 96-bit GCM nonce. Drawn from a pool refilled by `randomFillSync` (the same CSPRNG as
 * `randomBytes`), so the cost of one call into the RNG is shared by 512 seals; every IV is used exactly once.
 */
function nextIv(): Buffer {
  if (ivOffset + 12 > ivPool.length) {
    ivPool = randomFillSync(Buffer.allocUnsafe(IV_POOL_BYTES));
    ivOffset = 0;
  }
  const iv = ivPool.subarray(ivOffset, ivOffset + 12);
  ivOffset += 12;
  return iv;
}

function derive(secret: string, info: string): Buffer {
  return Buffer.from(hkdfSync('sha256', secret, 'devicegate/v1', info, 32));
}

/** Builds the keys from the gateway secret (DEVICEGATE_SECRET, at least 32 characters). */
export function deriveKeys(secret: string): Keys {
  const encKey = derive(secret, 'seal');
  const macKey = derive(secret, 'lookup');
  const cookieSecret = derive(secret, 'cookie').toString('base64url');
  const linkKey = derive(secret, 'scan-link');
  return {
    seal(plaintext, aad) {
      const iv = nextIv();
      const cipher = createCipheriv('aes-256-gcm', encKey, iv);
      cipher.setAAD(Buffer.from(aad));
      const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      return Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64url');
    },
    open(sealed, aad) {
      const raw = Buffer.from(sealed, 'base64url');
      if (raw.length < 28) throw new Error('sealed value is too short');
      const decipher = createDecipheriv('aes-256-gcm', encKey, raw.subarray(0, 12));
      decipher.setAAD(Buffer.from(aad));
      decipher.setAuthTag(raw.subarray(12, 28));
      return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8');
    },
    lookupHash(purpose, value) {
      return createHmac('sha256', macKey)
        .update(purpose)
        .update('\0')
        .update(value)
        .digest('hex')
        .slice(0, 40);
    },
    cookieSecret,
    linkMac(message) {
      return createHmac('sha256', linkKey).update(message).digest().subarray(0, 16);
    },
  };
}

/** A fresh random secret, for single-instance demo runs where none is configured. */
export function randomSecret(): string {
  return randomBytes(32).toString('base64url');
}

/** The key every demo device uses when DEVICEGATE_DEVICE_KEY is unset. Public: never for production. */
export const DEMO_DEVICE_KEY = 'devicegate-demo-fleet-key-not-secret';

/**
 * A device's MQTT password: base64url(HMAC-SHA256(key = fleet key, msg = deviceId)), no padding (README.md, "Device
 * credentials"; docs/brokers.md derives the same with openssl; docs/security.md M1).
 */
export function devicePassword(fleetKey: string, deviceId: string): string {
  return createHmac('sha256', fleetKey).update(deviceId).digest('base64url');
}

/**
 * Whether a presented secret (an admin bearer token) equals the expected one, in constant time: both are hashed
 * first, so neither the comparison nor an early length check tells how much of it was right.
 */
export function secretMatches(given: string, expected: string): boolean {
  const digest = (v: string) => createHash('sha256').update(v, 'utf8').digest();
  return timingSafeEqual(digest(given), digest(expected));
}

/** Constant-time check of a device's password. */
export function checkDevicePassword(
  fleetKey: string,
  deviceId: string,
  password: Uint8Array | undefined,
): boolean {
  if (password === undefined) return false;
  const expected = Buffer.from(devicePassword(fleetKey, deviceId));
  const given = Buffer.from(password);
  return given.length === expected.length && timingSafeEqual(given, expected);
}
