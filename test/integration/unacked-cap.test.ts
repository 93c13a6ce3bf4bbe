/**
 * Finding 2 of issue 10: a device with a persistent session that reads but never acknowledges made the embedded
 * broker store every reply (30,000 requests: 30,000 stored, gateway memory 202 → 254 MB, all 30,000 redelivered on
 * reconnect). Now a session keeps at most MAX_UNACKED_PER_CLIENT unacknowledged replies: the device is disconnected
 * at the cap, the reply past it is not stored (counted), and a reconnect redelivers exactly the cap.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import mqttPacket from 'mqtt-packet';
import { createLogger } from '../../src/observability/log.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import { EmbeddedBroker } from '../../src/transport/embedded.ts';
import { MAX_UNACKED_PER_CLIENT } from '../../src/transport/persistence.ts';
import { topics } from '../../src/transport/topics.ts';
import { closeAllDevices, fixedPendingReply, ridOf } from '../helpers/device.ts';
import { type RawConnection, deviceConnect, rawConnect } from '../helpers/raw.ts';
import { waitFor } from '../helpers/procs.ts';

const KEY = 'unacked-cap-test-fleet-key';
const PREFIX = 'devicegate/v1';
const ID = 'tv-never-acks';
const REQUESTS = 30_000;
/** generous: the finding grew by 52 MB; the cap keeps a hundred small replies */
const HEAP_GROWTH_BOUND_MB = 40;
const metrics = new Metrics();
let broker: EmbeddedBroker;
let handled = 0;

beforeAll(async () => {
  broker = new EmbeddedBroker({
    host: '127.0.0.1',
    port: 0,
    topics: topics(PREFIX),
    deviceAuth: 'hmac',
    deviceKey: KEY,
    log: createLogger('silent'),
    metrics,
  });
  // every request answered, as the gateway does with the per-device rate limit off
  await broker.start(async (req) => {
    handled += 1;
    await broker.publish(req.deviceId, fixedPendingReply(ridOf(req.payload)));
  });
});
afterEach(closeAllDevices);
afterAll(async () => {
  await broker?.close();
});

/** A persistent-session device that subscribes to its `res` at QoS 1 and never sends a PUBACK. */
async function neverAcking(): Promise<RawConnection> {
  const raw = await rawConnect(broker.port);
  raw.send(deviceConnect(ID, { key: KEY }, { clean: false }));
  await raw.waitForPacket('connack');
  raw.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `${PREFIX}/${ID}/res`, qos: 1 }] });
  await raw.waitForPacket('suback');
  return raw;
}

const publishes = (raw: RawConnection) => raw.packets.filter((p) => p.cmd === 'publish');

describe('a persistent session that never acknowledges', () => {
  it(`is capped at ${MAX_UNACKED_PER_CLIENT} stored replies over ${REQUESTS} requests, and a reconnect redelivers exactly that many`, async () => {
    const heapBefore = process.memoryUsage().heapUsed;
    const raw = await neverAcking();
    const request = (i: number) =>
      mqttPacket.generate({
        cmd: 'publish',
        topic: `${PREFIX}/${ID}/req/status`,
        payload: Buffer.from(`{"rid":"r${i}"}`),
        qos: 0,
        dup: false,
        retain: false,
      });
    raw.send(Buffer.concat(Array.from({ length: REQUESTS }, (_, i) => request(i))));
    // at the cap the broker closes the connection of the device that is not acknowledging
    await raw.waitForClose(30_000);
    expect(publishes(raw).length).toBeLessThanOrEqual(MAX_UNACKED_PER_CLIENT);
    expect(await metrics.value('devicegate_mqtt_unacked_dropped_total')).toBeGreaterThanOrEqual(1);

    const again = await neverAcking();
    await waitFor(() => publishes(again).length >= MAX_UNACKED_PER_CLIENT, 10_000, 'the redelivery');
    // nothing more comes: the session held exactly the cap
    await new Promise((r) => setTimeout(r, 500));
    expect(publishes(again)).toHaveLength(MAX_UNACKED_PER_CLIENT);
    const heapGrowthMb = (process.memoryUsage().heapUsed - heapBefore) / 2 ** 20;
    console.info(`unacked cap: ${handled} requests handled, heap growth ${heapGrowthMb.toFixed(1)} MB`);
    expect(heapGrowthMb).toBeLessThan(HEAP_GROWTH_BOUND_MB);
  });
});
