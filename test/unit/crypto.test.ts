import { describe, expect, it } from 'vitest';
import { checkDevicePassword, deriveKeys, devicePassword } from '../../src/core/crypto.ts';
import {
  formatUserCode,
  generateUserCode,
  normalizeUserCode,
  USER_CODE_ALPHABET,
  userCodePlaceholder,
  userCodeSpace,
} from '../../src/core/codes.ts';
import { flowCodec } from '../../src/store/codec.ts';
import type { Flow } from '../../src/core/flow.ts';

describe('device credentials', () => {
  it('is base64url HMAC-SHA256 of the device id without padding', () => {
    // echo -n tv-1 | openssl dgst -sha256 -hmac key -binary | basenc --base64url
    const pw = devicePassword('0123456789abcdef', 'tv-1');
    expect(pw).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(checkDevicePassword('0123456789abcdef', 'tv-1', Buffer.from(pw))).toBe(true);
    expect(checkDevicePassword('0123456789abcdef', 'tv-2', Buffer.from(pw))).toBe(false);
    expect(checkDevicePassword('0123456789abcdef', 'tv-1', Buffer.from(pw.slice(1)))).toBe(false);
    expect(checkDevicePassword('0123456789abcdef', 'tv-1', undefined)).toBe(false);
  });
});

describe('sealing', () => {
  const keys = deriveKeys('k'.repeat(32));
  it('round-trips and binds to the flow id', () => {
    const sealed = keys.seal('secret', 'tv-1/r1');
    expect(sealed).not.toContain('secret');
    expect(keys.open(sealed, 'tv-1/r1')).toBe('secret');
    expect(() => keys.open(sealed, 'tv-2/r1')).toThrow();
    expect(() => deriveKeys('j'.repeat(32)).open(sealed, 'tv-1/r1')).toThrow();
  });
  it('the codec stores no secret in clear', () => {
    const codec = flowCodec(keys);
    const flow: Flow = {
      deviceId: 'tv-1',
      rid: 'r1',
      mode: 'device',
      state: 'authorized',
      scope: 'openid',
      createdAt: 1,
      expiresAt: 2,
      interval: 5,
      verificationUri: 'https://idp.example/device',
      secrets: {
        userCode: 'WDJB-MJHT',
        deviceCode: 'DEVICECODE',
        token: { access_token: 'ACCESSTOKEN', token_type: 'Bearer' },
      },
    };
    const text = codec.encode(flow);
    for (const s of ['WDJB', 'DEVICECODE', 'ACCESSTOKEN']) expect(text).not.toContain(s);
    expect(codec.decode('tv-1', 'r1', text)).toEqual(flow);
  });
});

describe('user codes (RFC 8628 §6.1)', () => {
  it('draws 8 letters of the base-20 alphabet', () => {
    for (let i = 0; i < 200; i++) {
      const c = generateUserCode(8);
      expect(c).toMatch(new RegExp(`^[${USER_CODE_ALPHABET}]{8}$`));
    }
    expect(userCodeSpace(8)).toBe(20 ** 8);
    expect(formatUserCode('WDJBMJHT')).toBe('WDJB-MJHT');
  });
  it('draws, shows and reads back codes of 9 to 12 letters in groups of four', () => {
    const shown: Record<number, RegExp> = {
      9: /^[A-Z]{4}-[A-Z]{4}-[A-Z]$/,
      10: /^[A-Z]{4}-[A-Z]{4}-[A-Z]{2}$/,
      11: /^[A-Z]{4}-[A-Z]{4}-[A-Z]{3}$/,
      12: /^[A-Z]{4}-[A-Z]{4}-[A-Z]{4}$/,
    };
    for (const length of [9, 10, 11, 12]) {
      const c = generateUserCode(length);
      expect(c).toMatch(new RegExp(`^[${USER_CODE_ALPHABET}]{${length}}$`));
      expect(formatUserCode(c)).toMatch(shown[length]!);
      expect(normalizeUserCode(formatUserCode(c).toLowerCase())).toBe(c);
      expect(userCodeSpace(length)).toBe(20 ** length);
    }
    expect(formatUserCode('WDJBMJHTXZ')).toBe('WDJB-MJHT-XZ');
    expect(userCodePlaceholder(8)).toBe('XXXX-XXXX');
    expect(userCodePlaceholder(10)).toBe('XXXX-XXXX-XX');
    expect(normalizeUserCode('wdjb mjht xz')).toBe('WDJBMJHTXZ');
  });
  it.each(['wdjb-mjht', ' WDJB MJHT ', 'WDJBMJHT', 'ＷＤＪＢ－ＭＪＨＴ', 'wdjb_mjht', 'WDJB–MJHT'])(
    'normalises %j',
    (input) => {
      expect(normalizeUserCode(input)).toBe('WDJBMJHT');
    },
  );
  it.each([
    ['Cyrillic look-alikes', 'WDJВ-МJНТ'],
    ['vowels', 'WDJA-MJHT'],
    ['digits', 'WDJ8-MJHT'],
    ['too short', 'WDJB-MJH'],
    ['too long (13 letters)', 'WDJB-MJHT-XZBC-D'],
    ['over 64 characters', `WDJBMJHT${' '.repeat(60)}`],
  ])('refuses %s', (_n, input) => {
    expect(normalizeUserCode(input)).toBeUndefined();
  });
});
