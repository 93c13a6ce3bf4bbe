/**
 * Finding 6 of issue 10: a QoS 2 PUBLISH on a request topic resent with the same packet id before PUBREL (50 sends)
 * was handled 43 times by the embedded broker. aedes looks a QoS 2 packet id up before it stores it, and handles a
 * whole socket read at once, so the copies in one read all miss the lookup. The request topics are QoS 0/1 by
 * contract: the embedded broker refuses QoS 2 there (the connection is closed, counted as
 * `devicegate_mqtt_denied_total{op="publish",reason="qos2"}`). Mosquitto stores a QoS 2 packet id before it forwards
 * anything, so through an external broker the same 50 sends reach the gateway once.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { createLogger } from '../../src/observability/log.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import { EmbeddedBroker } from '../../src/transport/embedded.ts';
import { ExternalBroker } from '../../src/transport/external.ts';
import { topics } from '../../src/transport/topics.ts';
import type { IncomingRequest } from '../../src/transport/types.ts';
import { closeAllDevices } from '../helpers/device.ts';
import { type RawConnection, rawConnect, rawDevice } from '../helpers/raw.ts';
import { startMosquitto, stopAll, waitFor } from '../helpers/procs.ts';

const KEY = 'qos2-test-fleet-key';
const PREFIX = 'devicegate/v1';
const SENDS = 50;
const log = createLogger('silent');

afterEach(closeAllDevices);
afterAll(stopAll);

/** The same QoS 2 PUBLISH (one packet id) `sends` times in one write, the copies flagged DUP, no PUBREL. */
function resendQos2(raw: RawConnection, deviceId: string, sends = SENDS): void {
  const publish = (dup: boolean): Packet => ({
    cmd: 'publish',
    topic: `${PREFIX}/${deviceId}/req/status`,
    payload: Buffer.from('{"rid":"r-qos2"}'),
    qos: 2,
    messageId: 7,
    dup,
    retain: false,
  });
  raw.send(Buffer.concat(Array.from({ length: sends }, (_, i) => mqttPacket.generate(publish(i > 0)))));
}

describe('QoS 2 on a request topic', () => {
  it('is refused by the embedded broker: the connection is closed and nothing is handled', async () => {
    const calls: IncomingRequest[] = [];
    const metrics = new Metrics();
    const broker = new EmbeddedBroker({
      host: '127.0.0.1',
      port: 0,
      topics: topics(PREFIX),
      deviceAuth: 'hmac',
      deviceKey: KEY,
      log,
      metrics,
    });
    await broker.start(async (req) => {
      calls.push(req);
    });
    try {
      const raw = await rawDevice(broker.port, 'tv-qos2', { key: KEY });
      resendQos2(raw, 'tv-qos2');
      await raw.waitForClose();
      expect(calls).toEqual([]);
      expect(await metrics.value('devicegate_mqtt_denied_total', { op: 'publish', reason: 'qos2' })).toBe(1);
      // QoS 1 on the same topic still works
      const again = await rawDevice(broker.port, 'tv-qos2', { key: KEY });
      again.send({
        cmd: 'publish',
        topic: `${PREFIX}/tv-qos2/req/status`,
        payload: '{"rid":"r1"}',
        qos: 1,
        messageId: 1,
        dup: false,
        retain: false,
      });
      await again.waitForPacket('puback');
      await waitFor(() => calls.length === 1, 5000, 'the QoS 1 request');
    } finally {
      await broker.close();
    }
  });

  it('reaches the gateway at most once through Mosquitto, exactly once when the device completes the exchange', async () => {
    const mosquitto = await startMosquitto();
    const calls: IncomingRequest[] = [];
    const t = new ExternalBroker({ url: mosquitto.url, topics: topics(PREFIX), log, metrics: new Metrics() });
    await t.start(async (req) => {
      calls.push(req);
    });
    const device = async () => {
      const raw = await rawConnect(mosquitto.port);
      raw.send({
        cmd: 'connect',
        protocolId: 'MQTT',
        protocolVersion: 4,
        clientId: 'tv-qos2',
        clean: true,
        keepalive: 30,
      });
      await raw.waitForPacket('connack');
      return raw;
    };
    const handled = () => calls.filter((c) => c.payload.toString().includes('r-qos2')).length;
    try {
      // 50 sends before PUBREL: Mosquitto answers the first copies with PUBREC, then drops the connection as a
      // protocol error; it forwards a QoS 2 message only on PUBREL
      const flooding = await device();
      resendQos2(flooding, 'tv-qos2');
      await flooding.waitForClose();
      // one resend, then PUBREL: handled exactly once
      const raw = await device();
      resendQos2(raw, 'tv-qos2', 2);
      raw.send({ cmd: 'pubrel', messageId: 7 });
      await raw.waitForPacket('pubcomp');
      // a later request has arrived, so any duplicate would have too
      raw.send({
        cmd: 'publish',
        topic: `${PREFIX}/tv-qos2/req/status`,
        payload: '{"rid":"r-after"}',
        qos: 1,
        messageId: 8,
        dup: false,
        retain: false,
      });
      await waitFor(
        () => calls.some((c) => c.payload.toString().includes('r-after')),
        5000,
        'the later request',
      );
      expect(handled()).toBe(1);
    } finally {
      await t.close();
    }
  });
});
