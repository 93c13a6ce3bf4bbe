/**
 * Two gateway instances on one Redis, one of them on a host whose clock is 15 s ahead. The instances compare times
 * across each other (a flow scheduled by one is polled by whichever claims it; a lease taken by one is checked by the
 * other), so both run on the Redis server's time (src/store/redis/clock.ts). The upstream is a fake RFC 8628 server
 * that times token requests (test/helpers/fake-upstream.ts), so the first poll is measured where it arrives.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.ts';
import type { Clock } from '../../src/core/clock.ts';
import { createLogger } from '../../src/observability/log.ts';
import { takeLease } from '../../src/service/lease.ts';
import { closeAllDevices, connectDevice } from '../helpers/device.ts';
import { type FakeUpstream, startFakeUpstream } from '../helpers/fake-upstream.ts';
import { type StartedGateway, startGateway } from '../helpers/gateway.ts';
import { startRedis, stopAll, waitFor } from '../helpers/procs.ts';

const KEY = 'clock-skew-fleet-key-0123456789';
const SKEW_MS = 15_000;
const INTERVAL_S = 5;
const log = createLogger('silent');

let upstream: FakeUpstream;
let onTime: StartedGateway;
let ahead: StartedGateway;

async function gateway(redisUrl: string, clock: Clock): Promise<StartedGateway> {
  const config = loadConfig({
    DEVICEGATE_HTTP_PORT: '0',
    DEVICEGATE_MQTT_PORT: '0',
    DEVICEGATE_REDIS_URL: redisUrl,
    DEVICEGATE_UPSTREAM_ISSUER: upstream.url,
    DEVICEGATE_UPSTREAM_CLIENT_ID: 'gw',
    DEVICEGATE_DEVICE_KEY: KEY,
    DEVICEGATE_SECRET: 's'.repeat(40),
    DEVICEGATE_LOG_LEVEL: 'silent',
  });
  return startGateway(config, { log, clock });
}

beforeAll(async () => {
  const redis = await startRedis();
  upstream = await startFakeUpstream({ intervalSeconds: INTERVAL_S });
  onTime = await gateway(redis.url, { now: () => Date.now() });
  ahead = await gateway(redis.url, { now: () => Date.now() + SKEW_MS });
});

afterAll(async () => {
  await closeAllDevices();
  await onTime?.close();
  await ahead?.close();
  await upstream?.close();
  await stopAll();
});

describe('one instance 15 s ahead of the other, one Redis', () => {
  it('both run on the Redis server time', () => {
    expect(Math.abs(ahead.clock.now() - onTime.clock.now())).toBeLessThan(1000);
  });

  it('the first poll of a flow created on the on-time instance goes out one interval after creation, not at once', async () => {
    const tv = await connectDevice({ url: onTime.mqttUrl, deviceId: 'tv-skew', key: KEY });
    const created = Date.now();
    await tv.ask('authorize', { rid: 'r1' }, { status: 'pending' });
    const first = await waitFor(
      () => upstream.polls.find((p) => p.deviceCode === 'dc-1'),
      INTERVAL_S * 1000 + 5000,
      'the first poll',
    );
    // one interval (5 s) minus slack for a loaded machine; the skewed clock polled after 79 ms
    expect(first.at - created).toBeGreaterThanOrEqual((INTERVAL_S - 1) * 1000);
  });

  it('a lease taken on either instance is not taken as run out by the other', async () => {
    const tv = await connectDevice({ url: onTime.mqttUrl, deviceId: 'tv-lease', key: KEY });
    await tv.ask('authorize', { rid: 'r1' }, { status: 'pending' });
    const deps = (g: StartedGateway) => ({ store: g.store, clock: g.clock, leaseMs: 10_000 });

    const held = await takeLease(deps(onTime), 'tv-lease', 'r1');
    expect(held).toBeDefined();
    expect(await takeLease(deps(ahead), 'tv-lease', 'r1')).toBeUndefined();
    await held!.release();

    const heldAhead = await takeLease(deps(ahead), 'tv-lease', 'r1');
    expect(heldAhead).toBeDefined();
    expect(await takeLease(deps(onTime), 'tv-lease', 'r1')).toBeUndefined();
    await heldAhead!.release();
  });
});
