/**
 * The relay-mode device contract as scenarios that run against any broker: the embedded aedes broker
 * (relay-flow.test.ts) and an external Mosquitto (external-broker.test.ts). Each suite supplies how a device
 * connects; the scenarios register their own `it`s. Not a test file: the suites import it.
 */
import { expect, it } from 'vitest';
import type { DemoIdp } from '../../src/demo/idp.ts';
import type { TestDevice } from '../helpers/device.ts';
import { approveDeviceCode } from '../helpers/idp-person.ts';

export interface RelayTarget {
  /** the upstream (the demo IdP with the device flow) */
  idp: DemoIdp;
  /** a device connected to the broker under test, subscribed to its own `res` */
  device(id: string): Promise<TestDevice>;
}

/** The upstream's userinfo endpoint with `accessToken`. */
export async function userinfo(upstream: DemoIdp, accessToken: string): Promise<Response> {
  const meta = (await (await fetch(`${upstream.issuer}/.well-known/openid-configuration`)).json()) as {
    userinfo_endpoint: string;
  };
  return fetch(meta.userinfo_endpoint, { headers: { authorization: `Bearer ${accessToken}` } });
}

/** Bad payloads: each gets `invalid_request` on the sender's own `res`. */
export const BAD_INPUT_CASES: ReadonlyArray<[string, string, string | Buffer]> = [
  ['not JSON', 'authorize', 'hello'],
  ['an array', 'authorize', '[]'],
  ['unknown field', 'authorize', JSON.stringify({ rid: 'b1', admin: true })],
  ['wrong type', 'authorize', JSON.stringify({ rid: 7 })],
  ['bad rid', 'status', JSON.stringify({ rid: '../../x' })],
  ['prototype pollution', 'authorize', '{"rid":"b2","__proto__":{"isAdmin":true}}'],
  ['oversize (5 KiB)', 'authorize', JSON.stringify({ rid: 'b3', scope: 'x'.repeat(5000) })],
  ['invalid UTF-8', 'ack', Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x7d])],
  ['unknown action', 'explode', JSON.stringify({ rid: 'b4' })],
  ['CRLF in scope', 'authorize', JSON.stringify({ rid: 'b5', scope: 'openid\r\nadmin' })],
];

/** Device ids the scenarios use (`prefix` + suffix): an external broker needs a credential for each. */
export function relayScenarioDevices(prefix: string): string[] {
  return [`${prefix}-happy`, `${prefix}-bystander`, ...BAD_INPUT_CASES.map((_, i) => `${prefix}-bad-${i}`)];
}

/**
 * Registers the scenarios. `target` is read when a test runs (after the suite's beforeAll); `prefix` names the
 * devices (see {@link relayScenarioDevices}). The suite closes devices itself (afterEach closeAllDevices).
 */
export function relayScenarios(prefix: string, target: () => RelayTarget): void {
  it('request → pending → the person approves upstream → the token is pushed and the upstream accepts it', async () => {
    const { idp, device } = target();
    const tv = await device(`${prefix}-happy`);
    const pending = await tv.ask('authorize', { rid: 'r1', scope: 'openid profile' }, { status: 'pending' });
    const p = pending.json!;
    expect(p).toMatchObject({ v: 1, rid: 'r1', status: 'pending' });
    expect(p.user_code).toEqual(expect.any(String));
    expect(String(p.verification_uri)).toContain(idp.issuer);
    expect(p.expires_in).toEqual(expect.any(Number));
    expect(pending.retain).toBe(false);
    expect(pending.qos).toBe(1);

    // the same rid again is idempotent: the same user code, no second flow
    const again = await tv.ask('authorize', { rid: 'r1', scope: 'openid profile' }, { status: 'pending' });
    expect(again.json!.user_code).toBe(p.user_code);

    await approveDeviceCode(String(p.verification_uri_complete ?? p.verification_uri), String(p.user_code));
    const done = await tv.waitForReply({ rid: 'r1', status: 'authorized' }, { timeoutMs: 10_000 });
    const a = done.json!;
    expect(a).toMatchObject({ v: 1, rid: 'r1', status: 'authorized', token_type: expect.any(String) });
    expect(done.retain).toBe(false);
    expect((await userinfo(idp, String(a.access_token))).status).toBe(200);
    // pushed once, and the idempotent repeat did not start a second flow
    expect(tv.received.filter((r) => r.json?.['status'] === 'authorized')).toHaveLength(1);

    // the device acks; the gateway forgets the token, a later status says so
    await tv.request('ack', { rid: 'r1' });
    const after = await tv.ask('status', { rid: 'r1' }, { status: 'error' });
    expect(after.json).toMatchObject({ error: 'invalid_request' });
    expect(JSON.stringify(after.json)).not.toContain(String(a.access_token));
  });

  let okCount = 0;
  it.each(BAD_INPUT_CASES.map(([name, action, payload], i) => [name, action, payload, i] as const))(
    'bad input (%s) gets invalid_request on the sender’s own res, and the gateway stays up',
    async (_name, action, payload, i) => {
      const { device } = target();
      // one device per case: the per-device request limit is not what this checks
      const bad = await device(`${prefix}-bad-${i}`);
      const other = await device(`${prefix}-bystander`);
      const from = bad.received.length;
      await bad.publish(bad.reqTopic(action), payload, { qos: 1 });
      const r = await bad.waitForReply({ status: 'error' }, { from });
      expect(r.json).toMatchObject({ v: 1, status: 'error', error: 'invalid_request' });
      expect(String(r.json!.error_description).length).toBeGreaterThan(5);
      expect(({} as Record<string, unknown>).isAdmin).toBeUndefined();
      // nothing reached the bystander, and the gateway still answers real requests
      expect(other.received).toHaveLength(0);
      const rid = `ok-${++okCount}`;
      const ok = await bad.ask('authorize', { rid }, { status: 'pending' });
      expect(ok.json!.user_code).toEqual(expect.any(String));
      await bad.ask('cancel', { rid }, { status: 'error' });
    },
  );
}
