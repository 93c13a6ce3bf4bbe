/** The stored form of a flow (src/store/codec.ts): compact, sealed, and validated on the way back. */
import { describe, expect, it } from 'vitest';
import { UnavailableError } from '../../src/core/errors.ts';
import { storeCall } from '../../src/service/store-call.ts';
import { deriveKeys } from '../../src/core/crypto.ts';
import type { BridgeFlow, RelayFlow } from '../../src/core/flow.ts';
import { MalformedFlowError, flowCodec } from '../../src/store/codec.ts';

const keys = deriveKeys('c'.repeat(32));
const codec = flowCodec(keys);
const T0 = Date.UTC(2026, 0, 1);

const relay: RelayFlow = {
  deviceId: 'tv-1',
  rid: 'r1',
  mode: 'device',
  state: 'pending',
  scope: 'openid',
  createdAt: T0,
  expiresAt: T0 + 600_000,
  interval: 5,
  nextPollAt: T0 + 5000,
  failures: 2,
  pollSentAt: T0 + 5000,
  lostPoll: true,
  verificationUri: 'https://idp.example/device',
  jwk: { kty: 'EC', crv: 'P-256', x: 'xx', y: 'yy' },
  device: { name: 'Living room TV' },
  network: '192.0.2.7',
  secrets: {
    userCode: 'WDJB-MJHT',
    deviceCode: 'DEVICECODE',
    verificationUriComplete: 'https://idp.example/device?user_code=WDJB-MJHT',
  },
};

const bridge: BridgeFlow = {
  deviceId: 'tv-1',
  rid: 'r2',
  mode: 'authorization_code',
  state: 'denied',
  scope: 'openid profile',
  createdAt: T0,
  expiresAt: T0 + 900_000,
  interval: 5,
  approvedAt: T0 + 7000,
  error: { code: 'access_denied', description: 'the person denied the request' },
  deliveredAt: T0 + 9000,
  secrets: { userCode: 'BCDF-GHJK', token: { access_token: 'ACCESSTOKEN', token_type: 'Bearer' } },
};

const approved: BridgeFlow = {
  ...bridge,
  state: 'pending',
  secrets: { userCode: 'BCDF-GHJK', codeVerifier: 'VERIFIER', nonce: 'NONCE' },
};
delete approved.error;
delete approved.deliveredAt;

/** The stored JSON with the sealed part replaced, to pin the public layout byte for byte. */
function layout(text: string): string {
  return text.replace(/"x":"[A-Za-z0-9_-]+"/, '"x":"…"');
}

/** A stored body of `flow` with its public JSON changed by `edit` (the sealed part kept). */
function tampered(text: string, edit: (body: Record<string, unknown>) => void): string {
  const body = JSON.parse(text) as Record<string, unknown>;
  edit(body);
  return JSON.stringify(body);
}

describe('flow codec: the compact form', () => {
  it('round-trips a relay flow and a bridge flow', () => {
    for (const flow of [relay, bridge, approved]) {
      expect(codec.decode(flow.deviceId, flow.rid, codec.encode(flow))).toEqual(flow);
    }
  });

  it('keeps the stored layout: short names, offsets from createdAt, the sealed part after the interval', () => {
    expect(layout(codec.encode(relay))).toBe(
      '{"m":"d","t":"pending","s":"openid","c":1767225600000,"e":600000,"i":5,"x":"…","n":5000,"f":2,"ps":5000,"lp":1,' +
        '"u":"https://idp.example/device","jwk":{"kty":"EC","crv":"P-256","x":"xx","y":"yy"},' +
        '"d":{"name":"Living room TV"},"ip":"192.0.2.7"}',
    );
    expect(layout(codec.encode(bridge))).toBe(
      '{"m":"a","t":"denied","s":"openid profile","c":1767225600000,"e":900000,"i":5,"x":"…","a":7000,' +
        '"er":["access_denied","the person denied the request"],"dl":9000}',
    );
  });

  it('stores no secret in clear', () => {
    const text = [relay, bridge, approved].map((f) => codec.encode(f)).join('\n');
    for (const s of ['WDJB', 'BCDF', 'DEVICECODE', 'user_code', 'ACCESSTOKEN', 'VERIFIER', 'NONCE']) {
      expect(text).not.toContain(s);
    }
  });

  it('seals an unchanged secrets object once, also after a read (the seal cache)', () => {
    const first = codec.encode(relay);
    expect(codec.encode({ ...relay, failures: 3 })).toContain(JSON.parse(first).x);
    const read = codec.decode('tv-1', 'r1', first);
    expect(JSON.parse(codec.encode({ ...read, state: 'cancelled' })).x).toBe(JSON.parse(first).x);
    // new secrets are sealed afresh
    expect(JSON.parse(codec.encode({ ...relay, secrets: { ...relay.secrets } })).x).not.toBe(
      JSON.parse(first).x,
    );
  });
});

describe('flow codec: what it refuses', () => {
  it('binds the sealed secrets to the flow id', () => {
    const text = codec.encode(relay);
    expect(() => codec.decode('tv-2', 'r1', text)).toThrow(MalformedFlowError);
    expect(() => codec.decode('tv-1', 'r9', text)).toThrow(MalformedFlowError);
    // and to the key
    expect(() => flowCodec(deriveKeys('d'.repeat(32))).decode('tv-1', 'r1', text)).toThrow(
      MalformedFlowError,
    );
  });

  it('a record that cannot be read back is not reported as a store outage (retrying would not help)', async () => {
    const text = codec.encode(relay);
    const other = flowCodec(deriveKeys('d'.repeat(32)));
    const read = storeCall(async () => other.decode('tv-1', 'r1', text));
    await expect(read).rejects.toBeInstanceOf(MalformedFlowError);
    await expect(storeCall(() => Promise.reject(new Error('ECONNRESET')))).rejects.toBeInstanceOf(
      UnavailableError,
    );
  });

  it.each<[string, (body: Record<string, unknown>) => void]>([
    ['an unknown mode', (b) => (b.m = 'z')],
    ['an unknown state', (b) => (b.t = 'approved')],
    ['a string where a number belongs', (b) => (b.e = '600000')],
    ['a relay body without its verification URI', (b) => delete b.u],
    ['a field of the other mode', (b) => (b.a = 10)],
    ['an unknown field', (b) => (b.zz = 1)],
    ['an unknown error code', (b) => (b.er = ['bad_code', 'x'])],
    ['a private key member in the jwk', (b) => (b.jwk = { kty: 'EC', d: 'private' })],
    ['no sealed part', (b) => delete b.x],
  ])('refuses %s', (_name, edit) => {
    expect(() => codec.decode('tv-1', 'r1', tampered(codec.encode(relay), edit))).toThrow(MalformedFlowError);
  });

  it('refuses the first, long stored form (no longer read)', () => {
    const { deviceId: _d, rid: _r, secrets, ...rest } = relay;
    const legacy = JSON.stringify({ ...rest, s: keys.seal(JSON.stringify(secrets), 'tv-1/r1') });
    expect(() => codec.decode('tv-1', 'r1', legacy)).toThrow(MalformedFlowError);
  });

  it('refuses a body that is not JSON', () => {
    expect(() => codec.decode('tv-1', 'r1', '{"m":"d",')).toThrow(MalformedFlowError);
  });

  it('refuses sealed secrets of the other mode or of the wrong shape', () => {
    const bridgeSecrets = JSON.parse(codec.encode({ ...approved, rid: 'r1' })).x as string;
    const spliced = tampered(codec.encode(relay), (b) => (b.x = bridgeSecrets));
    expect(() => codec.decode('tv-1', 'r1', spliced)).toThrow(MalformedFlowError);
    const illTyped = keys.seal(JSON.stringify({ u: 42 }), 'tv-1/r1');
    expect(() =>
      codec.decode(
        'tv-1',
        'r1',
        tampered(codec.encode(relay), (b) => (b.x = illTyped)),
      ),
    ).toThrow(MalformedFlowError);
  });
});
