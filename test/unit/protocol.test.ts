import { describe, expect, it } from 'vitest';
import { OAuthError } from '../../src/core/errors.ts';
import { MAX_PAYLOAD_BYTES, parseDeviceRequest, salvageRid } from '../../src/core/protocol.ts';
import { topics } from '../../src/transport/topics.ts';

const enc = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v));

function reject(action: Parameters<typeof parseDeviceRequest>[0], payload: Buffer): OAuthError {
  try {
    parseDeviceRequest(action, payload);
  } catch (e) {
    expect(e).toBeInstanceOf(OAuthError);
    return e as OAuthError;
  }
  throw new Error('accepted');
}

describe('device request parsing', () => {
  it('accepts a full authorize request', () => {
    const r = parseDeviceRequest(
      'authorize',
      enc({
        rid: 'r-1',
        scope: 'openid offline_access',
        device: { name: 'TV', model: 'X1', firmware: '1.0' },
      }),
    );
    expect(r).toEqual({
      action: 'authorize',
      body: {
        rid: 'r-1',
        scope: 'openid offline_access',
        device: { name: 'TV', model: 'X1', firmware: '1.0' },
      },
    });
  });

  it.each([
    ['not JSON', 'hello'],
    ['an array', '[1,2]'],
    ['null', 'null'],
    ['invalid UTF-8', Buffer.from([0x7b, 0xff, 0x7d])],
    ['unknown field', { rid: 'r', extra: 1 }],
    ['__proto__ key', '{"rid":"r","__proto__":{"polluted":true}}'],
    ['constructor key', { rid: 'r', constructor: { prototype: {} } }],
    ['wrong rid type', { rid: 5 }],
    ['bad rid characters', { rid: '../x' }],
    ['rid too long', { rid: 'a'.repeat(65) }],
    ['CRLF in scope', { rid: 'r', scope: 'openid\r\nx' }],
    ['private key in jwk', { rid: 'r', jwk: { kty: 'EC', crv: 'P-256', x: 'a', y: 'b', d: 'secret' } }],
    ['control character in device name', { rid: 'r', device: { name: 'a\u0007b' } }],
    ['deep nesting', `${'['.repeat(100_000)}${']'.repeat(100_000)}`.slice(0, 4000)],
  ])('refuses %s with invalid_request', (_name, payload) => {
    const err = reject('authorize', Buffer.isBuffer(payload) ? payload : enc(payload));
    expect(err.code).toBe('invalid_request');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('refuses oversize payloads before parsing', () => {
    const err = reject('status', Buffer.alloc(MAX_PAYLOAD_BYTES + 1, 0x20));
    expect(err.description).toContain(String(MAX_PAYLOAD_BYTES));
  });

  it('rid-only requests refuse anything but rid', () => {
    expect(parseDeviceRequest('ack', enc({ rid: 'r' }))).toEqual({ action: 'ack', body: { rid: 'r' } });
    expect(reject('ack', enc({ rid: 'r', scope: 'openid' })).description).toContain('scope');
  });

  it('salvages a well-formed rid from a refused payload, and nothing else', () => {
    expect(salvageRid(enc({ rid: 'r-9', junk: true }))).toBe('r-9');
    expect(salvageRid(enc({ rid: '#' }))).toBeUndefined();
    expect(salvageRid(enc('nope'))).toBeUndefined();
  });
});

describe('topics', () => {
  const t = topics('devicegate/v1');
  it('builds and parses the contract topics', () => {
    expect(t.response('tv-1')).toBe('devicegate/v1/tv-1/res');
    expect(t.request('tv-1', 'authorize')).toBe('devicegate/v1/tv-1/req/authorize');
    expect(t.requestFilter).toBe('devicegate/v1/+/req/+');
    expect(t.parseRequest('devicegate/v1/tv-1/req/status')).toEqual({
      deviceId: 'tv-1',
      action: 'status',
      rawAction: 'status',
    });
    expect(t.parseRequest('devicegate/v1/tv-1/req/fly')).toEqual({
      deviceId: 'tv-1',
      action: undefined,
      rawAction: 'fly',
    });
  });
  it.each([
    'devicegate/v1/tv-1/res',
    'devicegate/v1/tv-1/req',
    'other/tv-1/req/status',
    'devicegate/v1/a+b/req/x',
    'devicegate/v1/tv-1/req/x/y',
  ])('does not take %s as a request', (topic) => {
    expect(t.parseRequest(topic)).toBeUndefined();
  });
});
