/**
 * Device revocation with real parts: two gateway instances (each with its embedded aedes broker) on one private
 * redis-server, the admin API on each instance's operations port, mqtt.js devices, node-oidc-provider as the relay
 * upstream (RFC 7009 revocation, RFC 7662 introspection), and Mosquitto with the shipped config for an external
 * broker's devices.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { runCli } from '../../src/cli/commands.ts';
import { loadConfig } from '../../src/config/index.ts';
import { startDemoIdp, type DemoIdp } from '../../src/demo/idp.ts';
import { createLogger } from '../../src/observability/log.ts';
import { closeAllDevices, connectDevice, connectRefused } from '../helpers/device.ts';
import { type StartedGateway as Gateway, startGateway } from '../helpers/gateway.ts';
import { introspect, keptRefreshToken } from '../helpers/grants.ts';
import { approveDeviceCode } from '../helpers/idp-person.ts';
import { type ManagedProcess, freePort, startRedis, stopAll, waitFor } from '../helpers/procs.ts';
import { GATEWAY_PASSWORD, startBroker } from './cluster.ts';

const KEY = 'revocation-test-fleet-key-0123';
const SECRET = 'revocation-test-secret-0123456789abcdef';
const TOKEN = 'admin-token-for-the-revocation-test-0123456789';
const log = createLogger('silent');

let redis: ManagedProcess;
let idp: DemoIdp;
const gateways: Gateway[] = [];
let prefixes = 0;

async function gateway(extra: Record<string, string> = {}): Promise<Gateway> {
  const config = loadConfig({
    DEVICEGATE_HTTP_PORT: String(await freePort()),
    DEVICEGATE_MQTT_PORT: '0',
    DEVICEGATE_ADMIN_PORT: '0',
    DEVICEGATE_ADMIN_TOKEN: TOKEN,
    DEVICEGATE_UPSTREAM_ISSUER: idp.issuer,
    DEVICEGATE_UPSTREAM_CLIENT_ID: idp.clientId,
    DEVICEGATE_UPSTREAM_CLIENT_SECRET: idp.clientSecret,
    DEVICEGATE_UPSTREAM_MODE: 'device',
    DEVICEGATE_POLL_INTERVAL: '1',
    DEVICEGATE_APPROVALS_PER_PERSON: '0',
    DEVICEGATE_DEVICE_KEY: KEY,
    DEVICEGATE_SECRET: SECRET,
    DEVICEGATE_LOG_LEVEL: 'silent',
    ...extra,
  });
  const g = await startGateway(config, { log });
  gateways.push(g);
  return g;
}

/** Two instances on one Redis, with a key prefix of their own. */
async function pair(): Promise<[Gateway, Gateway]> {
  const shared = sharedRedis();
  return [await gateway(shared), await gateway(shared)];
}

function sharedRedis(): Record<string, string> {
  return { DEVICEGATE_REDIS_URL: redis.url, DEVICEGATE_REDIS_KEY_PREFIX: `rv${++prefixes}:` };
}

async function admin(g: Gateway, method: 'GET' | 'POST', path: string): Promise<Response> {
  return fetch(`${g.adminUrl}${path}`, { method, headers: { authorization: `Bearer ${TOKEN}` } });
}

/** Whether the demo IdP still honours the token (RFC 7662). */
async function active(token: string): Promise<boolean> {
  return (await introspect(idp, token)).active;
}

beforeAll(async () => {
  redis = await startRedis();
  idp = await startDemoIdp({ host: '127.0.0.1', port: 0, redirectUris: [], deviceFlow: true, log });
});

afterEach(closeAllDevices);

afterAll(async () => {
  await Promise.allSettled(gateways.map((g) => g.close()));
  await idp?.close();
  await stopAll();
});

describe('device revocation', () => {
  it('revoked on instance A through the admin API: the live session on instance B is closed within a second, reconnects to either are refused, restore lets it back', async () => {
    const [a, b] = await pair();
    const tv = await connectDevice({ url: b.mqttUrl, deviceId: 'tv-kick', key: KEY });
    const res = await admin(a, 'POST', '/admin/devices/tv-kick/revoke');
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ deviceId: 'tv-kick', revoked: true, changed: true });
    // the issue's bound: closed within a second of the revocation
    await tv.waitForClose(1000);

    for (const g of [a, b]) {
      expect((await connectRefused({ url: g.mqttUrl, deviceId: 'tv-kick', key: KEY })).code).toBe(5);
    }
    expect(await (await admin(b, 'GET', '/admin/devices/revoked')).json()).toEqual({ devices: ['tv-kick'] });

    expect((await admin(b, 'POST', '/admin/devices/tv-kick/restore')).status).toBe(200);
    const back = await connectDevice({ url: a.mqttUrl, deviceId: 'tv-kick', key: KEY });
    expect((await back.ask('authorize', { rid: 'r1' }, { status: 'pending' })).json).toMatchObject({
      rid: 'r1',
    });
  });

  it('the kept refresh token is revoked at the upstream and deleted, and a pending flow ends unauthorized_client', async () => {
    // one instance: with an embedded broker per instance, a result may be pushed from the instance the device is not on
    const a = await gateway(sharedRedis());
    const id = 'tv-grant';
    const tv = await connectDevice({ url: a.mqttUrl, deviceId: id, key: KEY });
    const p = (
      await tv.ask('authorize', { rid: 'g1', scope: 'openid offline_access' }, { status: 'pending' })
    ).json!;
    await approveDeviceCode(String(p.verification_uri), String(p.user_code));
    await tv.waitForReply({ rid: 'g1', status: 'authorized' }, { timeoutMs: 10_000 });
    const refreshToken = await keptRefreshToken(a.store, SECRET, id);
    expect(await active(refreshToken)).toBe(true);
    await tv.ask('authorize', { rid: 'g2' }, { status: 'pending' });

    expect((await admin(a, 'POST', `/admin/devices/${id}/revoke`)).status).toBe(200);
    await waitFor(async () => !(await active(refreshToken)), 5000, 'the refresh token to be revoked');
    await expect(keptRefreshToken(a.store, SECRET, id)).rejects.toThrow('no grant kept');
    await waitFor(
      async () => (await a.store.get(id, 'g2'))?.flow.state === 'failed',
      5000,
      'the pending flow to end',
    );
    expect((await a.store.get(id, 'g2'))?.flow).toMatchObject({ error: { code: 'unauthorized_client' } });
  });

  it('devicegate devices revoke / list-revoked / restore act on the store, and the running instance kicks the device', async () => {
    const shared = sharedRedis();
    const g = await gateway(shared);
    const env = { ...shared, DEVICEGATE_SECRET: SECRET, DEVICEGATE_LOG_LEVEL: 'info' };
    const audit: string[] = [];
    const sink = new Writable({
      write: (chunk: Buffer, _enc, done) => done(void audit.push(chunk.toString())),
    });
    const tv = await connectDevice({ url: g.mqttUrl, deviceId: 'tv-cli', key: KEY });
    expect(await runCli(['devices', 'revoke', 'tv-cli'], env, sink)).toEqual({
      out: 'tv-cli: revoked\n',
      code: 0,
    });
    await tv.waitForClose(1000);
    expect(await runCli(['devices', 'list-revoked'], env)).toEqual({ out: 'tv-cli\n', code: 0 });
    expect((await connectRefused({ url: g.mqttUrl, deviceId: 'tv-cli', key: KEY })).code).toBe(5);
    expect((await runCli(['devices', 'restore', 'tv-cli', 'tv-other'], env, sink))?.out).toBe(
      'tv-cli: restored\ntv-other: restored (no change)\n',
    );
    await connectDevice({ url: g.mqttUrl, deviceId: 'tv-cli', key: KEY });
    expect(audit.map((l) => JSON.parse(l) as Record<string, unknown>)).toMatchObject([
      { event: 'device.revoked', deviceId: 'tv-cli' },
      { event: 'device.restored', deviceId: 'tv-cli' },
      { event: 'device.restored', deviceId: 'tv-other' },
    ]);
  });

  it('with an external broker (Mosquitto, shipped config) a revoked device’s requests are answered unauthorized_client', async () => {
    const broker = await startBroker({ key: KEY, devices: ['tv-ext'], gateways: ['devicegate-1'] });
    const g = await gateway({
      DEVICEGATE_MQTT_URL: broker.url,
      DEVICEGATE_MQTT_USERNAME: 'devicegate-1',
      DEVICEGATE_MQTT_PASSWORD: GATEWAY_PASSWORD,
      DEVICEGATE_MQTT_CLIENT_ID: 'devicegate-1',
    });
    const tv = await connectDevice({ url: broker.url, deviceId: 'tv-ext', key: KEY });
    await tv.ask('authorize', { rid: 'x1' }, { status: 'pending' });
    expect((await admin(g, 'POST', '/admin/devices/tv-ext/revoke')).status).toBe(200);
    const r = await tv.ask('authorize', { rid: 'x2' }, { status: 'error' });
    expect(r.json).toMatchObject({ rid: 'x2', error: 'unauthorized_client' });
  });
});
