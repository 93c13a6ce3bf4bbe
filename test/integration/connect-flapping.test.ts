/**
 * Finding 8 (connect flapping) of issue 10: 300 CONNECTs in 1.4 s were all accepted by the embedded broker. Now each
 * client id and each remote address has a budget of CONNECTs (./src/transport/connect-limit.ts); past it the broker
 * answers CONNACK 3 "server unavailable" and counts the refusal.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/observability/log.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import { CONNECTS_PER_ADDRESS, CONNECTS_PER_DEVICE } from '../../src/transport/connect-limit.ts';
import { EmbeddedBroker } from '../../src/transport/embedded.ts';
import { topics } from '../../src/transport/topics.ts';
import { closeAllDevices } from '../helpers/device.ts';
import { deviceConnect, rawConnect } from '../helpers/raw.ts';

const KEY = 'connect-flapping-test-fleet-key';
const ATTEMPTS = 300;
const metrics = new Metrics();
let broker: EmbeddedBroker;

beforeAll(async () => {
  broker = new EmbeddedBroker({
    host: '127.0.0.1',
    port: 0,
    topics: topics('devicegate/v1'),
    deviceAuth: 'hmac',
    deviceKey: KEY,
    log: createLogger('silent'),
    metrics,
  });
  await broker.start(async () => {});
});
afterEach(closeAllDevices);
afterAll(async () => {
  await broker?.close();
});

/** One CONNECT with the device's real credentials; the CONNACK return code. */
async function connectOnce(deviceId: string): Promise<number> {
  const raw = await rawConnect(broker.port);
  raw.send(deviceConnect(deviceId, { key: KEY }));
  const connack = await raw.waitForPacket('connack', 15_000);
  raw.destroy();
  return connack.cmd === 'connack' ? (connack.returnCode ?? -1) : -1;
}

/** `ATTEMPTS` CONNECTs at once; the return codes and the seconds they took. */
async function burst(idOf: (i: number) => string): Promise<{ codes: number[]; seconds: number }> {
  const started = Date.now();
  const codes = await Promise.all(Array.from({ length: ATTEMPTS }, (_, i) => connectOnce(idOf(i))));
  return { codes, seconds: (Date.now() - started) / 1000 };
}

/** At most the burst, plus what refilled while the attempts were made (and one for the rounding). */
const budget = (limit: { burst: number; perSecond: number }, seconds: number) =>
  limit.burst + Math.ceil(seconds * limit.perSecond) + 1;

describe('connect flapping on the embedded broker', () => {
  // first: the later tests spend this address's budget
  it('does not let CONNECTs with bad credentials spend the budget of the device they name', async () => {
    const codes = await Promise.all(
      Array.from({ length: 50 }, async () => {
        const raw = await rawConnect(broker.port);
        raw.send(deviceConnect('tv-victim', { key: 'not-the-fleet-key-at-all' }));
        const connack = await raw.waitForPacket('connack', 15_000);
        raw.destroy();
        return connack.cmd === 'connack' ? connack.returnCode : -1;
      }),
    );
    expect(new Set(codes)).toEqual(new Set([4])); // bad user name or password, never "server unavailable"
    expect(await connectOnce('tv-victim')).toBe(0);
  });

  it('refuses one client id past its budget with CONNACK 3', async () => {
    const { codes, seconds } = await burst(() => 'tv-flapping');
    const accepted = codes.filter((c) => c === 0).length;
    expect(accepted).toBeGreaterThanOrEqual(CONNECTS_PER_DEVICE.burst);
    expect(accepted).toBeLessThanOrEqual(budget(CONNECTS_PER_DEVICE, seconds));
    // every other attempt was told "server unavailable"
    expect(codes.filter((c) => c !== 0)).toEqual(Array(ATTEMPTS - accepted).fill(3));
    expect(
      await metrics.value('devicegate_mqtt_refused_connects_total', { reason: 'too_many_connects' }),
    ).toBe(ATTEMPTS - accepted);
  });

  it('refuses one address cycling through client ids past its budget', async () => {
    const before = await metrics.value('devicegate_mqtt_refused_connects_total', {
      reason: 'too_many_connects',
    });
    const { codes, seconds } = await burst((i) => `tv-cycling-${i}`);
    const accepted = codes.filter((c) => c === 0).length;
    expect(accepted).toBeLessThanOrEqual(budget(CONNECTS_PER_ADDRESS, seconds));
    expect(accepted).toBeLessThan(ATTEMPTS);
    expect(codes.filter((c) => c !== 0)).toEqual(Array(ATTEMPTS - accepted).fill(3));
    expect(
      (await metrics.value('devicegate_mqtt_refused_connects_total', { reason: 'too_many_connects' })) -
        before,
    ).toBe(ATTEMPTS - accepted);
  });
});
