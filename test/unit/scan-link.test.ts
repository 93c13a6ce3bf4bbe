/**
 * The proof a scanned link carries (src/core/scan-link.ts): only the gateway's secret makes one, it names one code
 * and one expiry, and anything else — another code, another secret, a flipped bit, a stale link — is refused
 * without a lookup.
 */
import { describe, expect, it } from 'vitest';
import { deriveKeys } from '../../src/core/crypto.ts';
import { SCAN_PROOF_LENGTH, checkScanProof, scanProof } from '../../src/core/scan-link.ts';

const keys = deriveKeys('scan-link-test-secret-0123456789abcdef');
const NOW = 1_800_000_000_000;
const EXPIRES = NOW + 600_000;

describe('scanned link proofs', () => {
  it('are 30 base64url characters (22 bytes: the expiry and 128 bits of MAC) and check out for their code', () => {
    const k = scanProof(keys, 'WDJBMJHT', EXPIRES);
    expect(k).toMatch(/^[A-Za-z0-9_-]{30}$/);
    expect(k.length).toBe(SCAN_PROOF_LENGTH);
    expect(checkScanProof(keys, 'WDJBMJHT', k, NOW)).toBe(EXPIRES);
    // one per flow: the same code with another expiry has another proof
    expect(scanProof(keys, 'WDJBMJHT', EXPIRES + 1)).not.toBe(k);
  });

  it('refuse another code, another secret, a changed expiry or MAC, junk, and a proof past its expiry', () => {
    const k = scanProof(keys, 'WDJBMJHT', EXPIRES);
    expect(checkScanProof(keys, 'WDJBMJHX', k, NOW)).toBeUndefined();
    expect(
      checkScanProof(deriveKeys('another-secret-0123456789abcdef012345'), 'WDJBMJHT', k, NOW),
    ).toBeUndefined();
    const raw = Buffer.from(k, 'base64url');
    for (const at of [0, 5, 6, 21]) {
      const flipped = Buffer.from(raw);
      flipped[at] = flipped[at]! ^ 1;
      expect(
        checkScanProof(keys, 'WDJBMJHT', flipped.toString('base64url'), NOW),
        `byte ${at}`,
      ).toBeUndefined();
    }
    for (const junk of ['', 'x', k.slice(1), `${k}A`, `${k.slice(0, 29)}=`, `${k.slice(0, 29)}+`]) {
      expect(checkScanProof(keys, 'WDJBMJHT', junk, NOW), junk).toBeUndefined();
    }
    // the same bytes spelled otherwise (the last character carries two spare bits) are not the proof either
    const last = 'AEIMQUYcgkosw048'.indexOf(k.at(-1)!);
    expect(last).toBeGreaterThanOrEqual(0);
    const respelled = `${k.slice(0, -1)}${'BFJNRVZdhlptx159'[last]}`;
    expect(Buffer.from(respelled, 'base64url')).toEqual(Buffer.from(k, 'base64url'));
    expect(checkScanProof(keys, 'WDJBMJHT', respelled, NOW)).toBeUndefined();
    expect(checkScanProof(keys, 'WDJBMJHT', k, EXPIRES - 1)).toBe(EXPIRES);
    expect(checkScanProof(keys, 'WDJBMJHT', k, EXPIRES)).toBeUndefined();
  });
});
