/**
 * External broker mode against a private Mosquitto set up from the shipped deploy/mosquitto files (config, ACL with
 * %u patterns, password file from make-passwords.sh; use_username_as_clientid, set_tcp_nodelay): the device
 * contract of the embedded broker works unchanged (the shared relay scenarios), the shared subscription splits
 * requests between instances, and /readyz follows the broker's state.
 */
import mqtt from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.ts';
import { UnavailableError } from '../../src/core/errors.ts';
import { type StartedGateway as Gateway, startGateway } from '../helpers/gateway.ts';
import { createLogger } from '../../src/observability/log.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import { ExternalBroker } from '../../src/transport/external.ts';
import { topics } from '../../src/transport/topics.ts';
import type { IncomingRequest } from '../../src/transport/types.ts';
import { closeAllDevices, connectDevice, type TestDevice } from '../helpers/device.ts';
import { startMosquitto, stopAll, waitFor } from '../helpers/procs.ts';
import {
  type Broker,
  GATEWAY_PASSWORD,
  PREFIX,
  type Upstream,
  startBroker,
  startUpstream,
} from './cluster.ts';
import { relayScenarioDevices, relayScenarios } from './relay-scenarios.ts';

const KEY = 'external-broker-test-fleet-key';
const SHARE_DEVICES = Array.from({ length: 12 }, (_, i) => `tv-share-${i}`);
const log = createLogger('silent');

let upstream: Upstream;
let broker: Broker;
let gw: Gateway;
const gateways: Gateway[] = [];

async function gateway(username: string, extra: Record<string, string> = {}): Promise<Gateway> {
  const config = loadConfig({
    DEVICEGATE_HTTP_PORT: '0',
    DEVICEGATE_MQTT_URL: broker.url,
    DEVICEGATE_MQTT_USERNAME: username,
    DEVICEGATE_MQTT_PASSWORD: GATEWAY_PASSWORD,
    DEVICEGATE_MQTT_CLIENT_ID: username,
    DEVICEGATE_UPSTREAM_ISSUER: upstream.idp.issuer,
    DEVICEGATE_UPSTREAM_CLIENT_ID: upstream.idp.clientId,
    DEVICEGATE_UPSTREAM_CLIENT_SECRET: upstream.idp.clientSecret,
    DEVICEGATE_UPSTREAM_MODE: 'device',
    DEVICEGATE_POLL_INTERVAL: '1',
    DEVICEGATE_DEVICE_KEY: KEY,
    DEVICEGATE_SECRET: 's'.repeat(40),
    DEVICEGATE_LOG_LEVEL: 'silent',
    ...extra,
  });
  const g = await startGateway(config, { log });
  gateways.push(g);
  return g;
}

function device(id: string): Promise<TestDevice> {
  return connectDevice({ url: broker.url, deviceId: id, key: KEY });
}

async function readyz(
  g: Gateway,
): Promise<{ status: number; body: { checks: Record<string, { ok: boolean }> } }> {
  const res = await fetch(`${g.httpUrl}/readyz`);
  return { status: res.status, body: (await res.json()) as { checks: Record<string, { ok: boolean }> } };
}

beforeAll(async () => {
  upstream = await startUpstream();
  broker = await startBroker({
    key: KEY,
    devices: [...relayScenarioDevices('tv-ext'), ...SHARE_DEVICES, 'tv-outage'],
  });
  gw = await gateway('devicegate-1');
});

afterEach(closeAllDevices);

afterAll(async () => {
  for (const g of gateways) await g.close();
  await upstream?.close();
  await stopAll();
});

describe('relay mode through Mosquitto', () => {
  relayScenarios('tv-ext', () => ({ idp: upstream.idp, device }));
});

describe('external broker transport', () => {
  it('splits device requests between instances through the shared subscription: each is handled once', async () => {
    const second = await gateway('devicegate-2');
    const count = (g: Gateway) =>
      g.metrics.value('devicegate_device_requests_total', { action: 'authorize' });
    const before = [await count(gw), await count(second)];
    try {
      const devices = await Promise.all(SHARE_DEVICES.map((id) => device(id)));
      // each device asks twice with different rids (memory stores: each instance knows only its own flows)
      for (const d of devices) {
        await d.request('authorize', { rid: 'a' });
        await d.request('authorize', { rid: 'b' });
      }
      for (const d of devices) {
        await d.waitForReply({ rid: 'a', status: 'pending' });
        await d.waitForReply({ rid: 'b', status: 'pending' });
      }
      // a later request of each device has been answered, so a duplicate would have arrived by now
      for (const d of devices) await d.ask('cancel', { rid: 'zz' }, { status: 'error' });
      for (const d of devices) {
        expect(
          d.received.filter((r) => r.json?.['status'] === 'pending').map((r) => r.json?.['rid']),
        ).toEqual(expect.arrayContaining(['a', 'b']));
        expect(d.received.filter((r) => r.json?.['status'] === 'pending')).toHaveLength(2);
      }
      const handled = [(await count(gw)) - before[0]!, (await count(second)) - before[1]!];
      expect(handled[0]! + handled[1]!).toBe(SHARE_DEVICES.length * 2);
      // Mosquitto spreads a share group round-robin: both instances got work
      expect(handled[0]).toBeGreaterThan(0);
      expect(handled[1]).toBeGreaterThan(0);
    } finally {
      await second.close();
    }
  });

  it('refuses to start with a wrong broker password (UnavailableError)', async () => {
    await expect(
      gateway('devicegate-2', { DEVICEGATE_MQTT_PASSWORD: 'not-the-password' }),
    ).rejects.toBeInstanceOf(UnavailableError);
  });

  it('/readyz: 200 while connected, 503 with the broker check failing while Mosquitto is down, 200 once it is back', async () => {
    const up = await readyz(gw);
    expect(up.status).toBe(200);
    expect(up.body.checks.broker).toMatchObject({ ok: true, detail: expect.stringContaining('connected') });

    await broker.stop();
    const down = await waitFor(
      async () => {
        const r = await readyz(gw);
        return r.status === 503 ? r : undefined;
      },
      5000,
      '/readyz 503',
    );
    expect(down.body.checks.broker).toMatchObject({
      ok: false,
      detail: expect.stringContaining('not connected'),
    });
    expect(down.body.checks.store).toMatchObject({ ok: true });
    expect(down.body.checks.upstream).toMatchObject({ ok: true });

    await broker.restart();
    await waitFor(async () => (await readyz(gw)).status === 200, 15_000, '/readyz 200 after the restart');
    // resubscribed: a device's request is handled again
    const tv = await device('tv-outage');
    const r = await tv.ask('authorize', { rid: 'after' }, { status: 'pending', timeoutMs: 10_000 });
    expect(r.json!.user_code).toEqual(expect.any(String));
  });

  it('drops a request the broker replays from its retained store (a broker that allows retain)', async () => {
    // a plain Mosquitto without the shipped retain_available false
    const plain = await startMosquitto();
    const publisher = await mqtt.connectAsync(plain.url, { clientId: 'tv-retainer', reconnectPeriod: 0 });
    await publisher.publishAsync(`${PREFIX}/tv-retainer/req/authorize`, '{"rid":"r-stored"}', {
      qos: 1,
      retain: true,
    });
    const seen: IncomingRequest[] = [];
    const metrics = new Metrics();
    const t = new ExternalBroker({ url: plain.url, topics: topics(PREFIX), log, metrics });
    try {
      await t.start(async (req) => {
        seen.push(req);
      });
      // a live request after the subscription is handled; the stored copy came first and was dropped
      await publisher.publishAsync(`${PREFIX}/tv-retainer/req/status`, '{"rid":"r-live"}', { qos: 1 });
      await waitFor(() => seen.length > 0, 5000, 'the live request');
      expect(seen.map((r) => r.payload.toString())).toEqual(['{"rid":"r-live"}']);
      expect(await metrics.value('devicegate_mqtt_denied_total', { op: 'publish', reason: 'retain' })).toBe(
        1,
      );
    } finally {
      await t.close();
      await publisher.endAsync();
      await plain.stop();
    }
  });
});
