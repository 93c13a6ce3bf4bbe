/**
 * Which device keys the gateway encrypts to (docs/security.md, device keys): the rules of src/core/device-key.ts as
 * applied by src/service/jwe.ts (`checkDeviceKey` at `req/authorize`, `encryptForDevice` at every delivery), with
 * real keys from node:crypto and crafted ones for what no key generator makes (e = 1, low-order X25519 points).
 */
import { createPublicKey, diffieHellman, generateKeyPairSync, randomBytes } from 'node:crypto';
import { compactDecrypt } from 'jose';
import { describe, expect, it } from 'vitest';
import { deviceKeyProblem } from '../../src/core/device-key.ts';
import { OAuthError } from '../../src/core/errors.ts';
import type { PublicJwk } from '../../src/core/flow.ts';
import { parseDeviceRequest } from '../../src/core/protocol.ts';
import { checkDeviceKey, encryptForDevice } from '../../src/service/jwe.ts';

type KeyKind =
  | { kind: 'rsa'; bits: number }
  | { kind: 'ec'; curve: 'P-256' | 'P-384' | 'P-521' }
  | { kind: 'x25519' }
  | { kind: 'ed25519' };

function keyPair(k: KeyKind) {
  switch (k.kind) {
    case 'rsa':
      return generateKeyPairSync('rsa', { modulusLength: k.bits });
    case 'ec':
      return generateKeyPairSync('ec', { namedCurve: k.curve });
    case 'x25519':
      return generateKeyPairSync('x25519');
    case 'ed25519':
      return generateKeyPairSync('ed25519');
  }
}

/** The public JWK of a fresh key pair, as a device would send it, and the private key to open what it receives. */
function deviceKey(k: KeyKind) {
  const { publicKey, privateKey } = keyPair(k);
  return { jwk: publicKey.export({ format: 'jwk' }) as PublicJwk, privateKey };
}

const rsa2048 = deviceKey({ kind: 'rsa', bits: 2048 });
const rsa1024 = deviceKey({ kind: 'rsa', bits: 1024 });

/** The `invalid_request` text `checkDeviceKey` refuses `jwk` with (fails the test when it accepts). */
async function refusal(jwk: PublicJwk): Promise<string> {
  const err: unknown = await checkDeviceKey(jwk).then(
    () => new Error(`accepted ${JSON.stringify(jwk)}`),
    (e: unknown) => e,
  );
  if (!(err instanceof OAuthError)) throw err;
  expect(err.code).toBe('invalid_request');
  return err.description;
}

/** A crafted RSA modulus of exactly `bits` bits (odd, top bit set): enough for the size rule, not a real key. */
function modulus(bits: number): string {
  const bytes = randomBytes(Math.ceil(bits / 8));
  const topBits = bits % 8 === 0 ? 8 : bits % 8;
  bytes[0] = (bytes[0]! & ((1 << topBits) - 1)) | (1 << (topBits - 1));
  bytes[bytes.length - 1]! |= 1;
  return bytes.toString('base64url');
}

/** An X25519 `x` from a u-coordinate (RFC 7748 §5: 32 bytes, little-endian). */
function u(value: bigint): string {
  const bytes = Buffer.alloc(32);
  for (let i = 0; i < 32; i++) bytes[i] = Number((value >> BigInt(8 * i)) & 0xffn);
  return bytes.toString('base64url');
}

const P = 2n ** 255n - 19n;
const TOP_BIT = 2n ** 255n;
/** The two points of order 8 (RFC 7748 §6.1 lists the all-zero result they give; values from libsodium's list). */
const ORDER_8 = [
  BigInt('325606250916557431795983626356110631294008115727848805560023387167927233504'),
  BigInt('39382357235489614581723060781553021112529911719440698176882885853963445705823'),
];
const LOW_ORDER: Array<[string, bigint]> = [
  ['0', 0n],
  ['1', 1n],
  ['p − 1 (order 2)', P - 1n],
  ['the first point of order 8', ORDER_8[0]!],
  ['the second point of order 8', ORDER_8[1]!],
  ['p (≡ 0)', P],
  ['p + 1 (≡ 1)', P + 1n],
  ['0 with the top bit set', TOP_BIT],
  ['the first point of order 8 with the top bit set', ORDER_8[0]! + TOP_BIT],
  ['the second point of order 8 with the top bit set', ORDER_8[1]! + TOP_BIT],
];

describe('device keys the gateway accepts', () => {
  const kinds: Array<[string, KeyKind]> = [
    ['EC P-256', { kind: 'ec', curve: 'P-256' }],
    ['EC P-384', { kind: 'ec', curve: 'P-384' }],
    ['EC P-521', { kind: 'ec', curve: 'P-521' }],
    ['OKP X25519', { kind: 'x25519' }],
  ];
  it.each(kinds)(
    '%s: accepted, and the token it receives opens with the private key',
    async (_name, kind) => {
      const { jwk, privateKey } = deviceKey(kind);
      await expect(checkDeviceKey(jwk)).resolves.toBeUndefined();
      const jwe = await encryptForDevice(jwk, { access_token: 'at' });
      const { plaintext, protectedHeader } = await compactDecrypt(jwe, privateKey);
      expect(protectedHeader).toMatchObject({ alg: 'ECDH-ES', enc: 'A256GCM' });
      expect(JSON.parse(new TextDecoder().decode(plaintext))).toEqual({ access_token: 'at' });
    },
  );

  it('RSA 2048 with e = 65537, alg RSA-OAEP-256, use enc and a kid: accepted, and opens with the private key', async () => {
    const jwk = { ...rsa2048.jwk, alg: 'RSA-OAEP-256', use: 'enc' as const, kid: 'k1' };
    await expect(checkDeviceKey(jwk)).resolves.toBeUndefined();
    const { plaintext, protectedHeader } = await compactDecrypt(
      await encryptForDevice(jwk, { access_token: 'at' }),
      rsa2048.privateKey,
    );
    expect(protectedHeader).toMatchObject({ alg: 'RSA-OAEP-256', kid: 'k1' });
    expect(JSON.parse(new TextDecoder().decode(plaintext))).toEqual({ access_token: 'at' });
  });

  it('RSA moduli of 2048 and 8192 bits keep the size rule; 2047 and 8193 do not', () => {
    const rsa = (bits: number): PublicJwk => ({ kty: 'RSA', n: modulus(bits), e: 'AQAB' });
    expect(deviceKeyProblem(rsa(2048))).toBeUndefined();
    expect(deviceKeyProblem(rsa(8192))).toBeUndefined();
    expect(deviceKeyProblem(rsa(2047))).toBe('RSA keys must be at least 2048 bits');
    expect(deviceKeyProblem(rsa(8193))).toBe('RSA keys must be at most 8192 bits');
  });

  it('an 8193-bit modulus passes the request schema, so its refusal names the size rule', () => {
    const payload = { rid: 'r', jwk: { kty: 'RSA', n: modulus(8193), e: 'AQAB' } };
    expect(() => parseDeviceRequest('authorize', Buffer.from(JSON.stringify(payload)))).not.toThrow();
  });
});

describe('device keys the gateway refuses, naming the rule', () => {
  it('RSA under 2048 bits (a real 1024-bit key)', async () => {
    expect(await refusal(rsa1024.jwk)).toBe('jwk: RSA keys must be at least 2048 bits');
  });

  it.each([
    ['e = 1 (the identity: the content key would travel in the clear)', 'AQ'],
    ['e = 3', 'Aw'],
    ['65537 with a leading zero octet', 'AAEAAQ'],
  ])('RSA with %s', async (_name, e) => {
    expect(await refusal({ ...rsa2048.jwk, e })).toBe(
      'jwk: RSA keys must have the public exponent e = 65537 ("AQAB")',
    );
  });

  it.each<[string, PublicJwk, string]>([
    ['RSA without e', { kty: 'RSA', n: rsa2048.jwk.n }, 'RSA keys need n and e (base64url)'],
    ['RSA with a non-base64url n', { kty: 'RSA', n: 'ab+/', e: 'AQAB' }, 'RSA keys need n and e (base64url)'],
    ['RSA with a curve', { ...rsa2048.jwk, crv: 'P-256' }, 'RSA keys have no crv, x or y'],
    [
      'RSA with alg RSA-OAEP',
      { ...rsa2048.jwk, alg: 'RSA-OAEP' },
      'alg of a RSA key must be RSA-OAEP-256 (the algorithm the gateway encrypts with) or absent',
    ],
  ])('%s', async (_name, jwk, rule) => {
    expect(await refusal(jwk)).toBe(`jwk: ${rule}`);
  });

  it('EC whose point is not on the curve (a real P-256 key with one bit of y flipped)', async () => {
    const { jwk } = deviceKey({ kind: 'ec', curve: 'P-256' });
    const y = Buffer.from(jwk.y!, 'base64url');
    y[31]! ^= 1;
    expect(await refusal({ ...jwk, y: y.toString('base64url') })).toBe(
      'jwk: the EC point must be on the curve',
    );
  });

  it.each<[string, (jwk: PublicJwk) => PublicJwk, string]>([
    ['without a curve', ({ x, y }) => ({ kty: 'EC', x, y }), 'EC keys must be on P-256, P-384 or P-521'],
    [
      'on X25519',
      ({ x, y }) => ({ kty: 'EC', crv: 'X25519', x, y }),
      'EC keys must be on P-256, P-384 or P-521',
    ],
    [
      'with a short x',
      ({ y }) => ({ kty: 'EC', crv: 'P-256', x: randomBytes(31).toString('base64url'), y }),
      'x and y of a P-256 key must be 32-byte base64url values',
    ],
    [
      'with P-256 coordinates named P-384',
      ({ x, y }) => ({ kty: 'EC', crv: 'P-384', x, y }),
      'x and y of a P-384 key must be 48-byte base64url values',
    ],
    ['with n', ({ x, y }) => ({ kty: 'EC', crv: 'P-256', x, y, n: 'AQAB' }), 'EC keys have no n or e'],
    [
      'with alg ECDH-ES+A256KW',
      ({ x, y }) => ({ kty: 'EC', crv: 'P-256', x, y, alg: 'ECDH-ES+A256KW' }),
      'alg of a EC key must be ECDH-ES (the algorithm the gateway encrypts with) or absent',
    ],
  ])('EC %s', async (_name, make, rule) => {
    const { jwk } = deviceKey({ kind: 'ec', curve: 'P-256' });
    expect(await refusal(make(jwk))).toBe(`jwk: ${rule}`);
  });

  it('OKP Ed25519 (a signing key) and X25519 with y or a short x', async () => {
    const ed = deviceKey({ kind: 'ed25519' }).jwk;
    expect(await refusal(ed)).toBe(
      'jwk: OKP keys must be X25519 (the gateway encrypts; Ed25519 keys only sign)',
    );
    const { jwk } = deviceKey({ kind: 'x25519' });
    expect(await refusal({ ...jwk, y: jwk.x })).toBe('jwk: X25519 keys have only x');
    expect(await refusal({ ...jwk, x: randomBytes(31).toString('base64url') })).toBe(
      'jwk: x of an X25519 key must be a 32-byte base64url value',
    );
  });

  it.each(LOW_ORDER)('X25519 low-order point: %s', async (_name, value) => {
    expect(await refusal({ kty: 'OKP', crv: 'X25519', x: u(value) })).toBe(
      'jwk: X25519 keys must not be low-order points',
    );
  });

  it('the crypto library refuses the canonical low-order points too (the all-zero shared secret, RFC 7748 §6.1)', () => {
    const { privateKey } = generateKeyPairSync('x25519');
    for (const [name, value] of LOW_ORDER.slice(0, 5)) {
      const publicKey = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: u(value) }, format: 'jwk' });
      expect(() => diffieHellman({ privateKey, publicKey }), name).toThrow();
    }
  });

  it.each(['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'])(
    'a key with the private member %s, at the request schema',
    (member) => {
      const payload = { rid: 'r', jwk: { ...rsa2048.jwk, [member]: 'c2VjcmV0' } };
      expect(() => parseDeviceRequest('authorize', Buffer.from(JSON.stringify(payload)))).toThrow(
        `invalid_request: jwk.${member}: a private key member: send only the public key`,
      );
    },
  );

  it('a whole exported key pair (private members included), at the request schema', () => {
    const whole = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
    expect(() =>
      parseDeviceRequest('authorize', Buffer.from(JSON.stringify({ rid: 'r', jwk: whole }))),
    ).toThrow('jwk.d: a private key member');
  });

  it('use other than enc, at the request schema', () => {
    const payload = { rid: 'r', jwk: { ...rsa2048.jwk, use: 'sig' } };
    expect(() => parseDeviceRequest('authorize', Buffer.from(JSON.stringify(payload)))).toThrow(
      'jwk.use: use must be "enc"',
    );
  });

  it('encryptForDevice applies the same rules: nothing is encrypted to a refused key', async () => {
    await expect(encryptForDevice({ ...rsa2048.jwk, e: 'AQ' }, { access_token: 'at' })).rejects.toMatchObject(
      {
        code: 'invalid_request',
        description: 'jwk: RSA keys must have the public exponent e = 65537 ("AQAB")',
      },
    );
    await expect(encryptForDevice(rsa1024.jwk, { access_token: 'at' })).rejects.toMatchObject({
      code: 'invalid_request',
      description: 'jwk: RSA keys must be at least 2048 bits',
    });
  });
});
