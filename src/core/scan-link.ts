/**
 * The proof a scanned `verification_uri_complete` carries (bridge mode): `k`, which lets the person holding the
 * device's link reach the confirm page without going through the guessable path, so the failed-entry limits of
 * typed codes (src/core/limits.ts) never refuse a scan (docs/security.md, "The code-entry page").
 *
 *   k = base64url(e ‖ HMAC-SHA256(scan-link key, "v1" ‖ code ‖ e)[0..16])     e = the flow's expiry, ms, 6 bytes
 *
 * The key is derived from DEVICEGATE_SECRET for this purpose alone (src/core/crypto.ts), so nothing is stored. The
 * MAC is checked before anything is looked up: a wrong `k` costs no store access and tells nothing about the code
 * (no oracle), and a valid one cannot be made without the secret (2^-128 per try). `e` makes the proof per flow: it
 * dies with its flow, and a later flow that draws the same code has another expiry (the page compares it with the
 * flow's). The person still approves or denies on the confirm page (RFC 8628 §5.4).
 */
import { timingSafeEqual } from 'node:crypto';
import type { Keys } from './crypto.ts';

const EXPIRY_BYTES = 6;
const MAC_BYTES = 16;
/** base64url length of a proof: 22 bytes → 30 characters. */
export const SCAN_PROOF_LENGTH = Math.ceil(((EXPIRY_BYTES + MAC_BYTES) * 4) / 3);

function mac(keys: Keys, canonicalCode: string, expiry: Buffer): Buffer {
  return keys.linkMac(`v1\0${canonicalCode}\0${expiry.toString('hex')}`);
}

/** The proof for the flow whose canonical user code is `canonicalCode` and which expires at `expiresAt` (ms). */
export function scanProof(keys: Keys, canonicalCode: string, expiresAt: number): string {
  const expiry = Buffer.alloc(EXPIRY_BYTES);
  expiry.writeUIntBE(expiresAt, 0, EXPIRY_BYTES);
  return Buffer.concat([expiry, mac(keys, canonicalCode, expiry)]).toString('base64url');
}

/**
 * The expiry (ms) `proof` was made for, when it is a proof for `canonicalCode` made with these keys and that expiry
 * is after `now`; otherwise `undefined`. Constant time in the MAC; looks nothing up.
 */
export function checkScanProof(
  keys: Keys,
  canonicalCode: string,
  proof: string,
  now: number,
): number | undefined {
  if (proof.length !== SCAN_PROOF_LENGTH) return undefined;
  const raw = Buffer.from(proof, 'base64url');
  // one spelling per proof: the last character's two spare bits must be zero, as the encoder writes them
  if (raw.length !== EXPIRY_BYTES + MAC_BYTES || raw.toString('base64url') !== proof) return undefined;
  const expiry = raw.subarray(0, EXPIRY_BYTES);
  if (!timingSafeEqual(raw.subarray(EXPIRY_BYTES), mac(keys, canonicalCode, expiry))) return undefined;
  const expiresAt = expiry.readUIntBE(0, EXPIRY_BYTES);
  return expiresAt > now ? expiresAt : undefined;
}
