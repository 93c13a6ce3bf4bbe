/**
 * MQTT 5 at an external broker (a private Mosquitto from the shipped deploy/mosquitto files): the gateway's own
 * connection on `DEVICEGATE_MQTT_PROTOCOL_VERSION` 5 or 4. On 5, a request's Response Topic and Correlation Data
 * route its direct answer — within the device's own `res` subtree only (`isOwnReplyTopic`, src/transport/topics.ts);
 * pushed results still go to `res`. On 4 the broker drops the properties and every answer goes to `res`. MQTT 5
 * devices work unchanged (the shared relay scenarios), and so does `mosquitto_rr -V 5` as a device.
 */
import { execFile } from 'node:child_process';
import type { IPublishPacket } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.ts';
import { devicePassword } from '../../src/core/crypto.ts';
import { createLogger } from '../../src/observability/log.ts';
import { closeAllDevices, connectDevice, type TestDevice } from '../helpers/device.ts';
import { type StartedGateway, startGateway } from '../helpers/gateway.ts';
import { approveDeviceCode } from '../helpers/idp-person.ts';
import { stopAll, waitFor } from '../helpers/procs.ts';
import {
  type Broker,
  GATEWAY_PASSWORD,
  PREFIX,
  type Upstream,
  startBroker,
  startUpstream,
} from './cluster.ts';
import { relayScenarioDevices, relayScenarios } from './relay-scenarios.ts';

const KEY = 'mqtt5-test-fleet-key';
const log = createLogger('silent');
const DEVICES = [
  ...relayScenarioDevices('tv-m5'),
  'tv-rpc',
  'tv-rpc-err',
  'tv-thief',
  'tv-victim',
  'tv-v4gw',
  'tv-rr',
];

let upstream: Upstream;
let broker: Broker;

async function gateway(protocolVersion: '4' | '5'): Promise<StartedGateway> {
  const config = loadConfig({
    DEVICEGATE_HTTP_PORT: '0',
    DEVICEGATE_MQTT_URL: broker.url,
    DEVICEGATE_MQTT_USERNAME: 'devicegate-1',
    DEVICEGATE_MQTT_PASSWORD: GATEWAY_PASSWORD,
    DEVICEGATE_MQTT_CLIENT_ID: 'devicegate-1',
    DEVICEGATE_MQTT_PROTOCOL_VERSION: protocolVersion,
    DEVICEGATE_UPSTREAM_ISSUER: upstream.idp.issuer,
    DEVICEGATE_UPSTREAM_CLIENT_ID: upstream.idp.clientId,
    DEVICEGATE_UPSTREAM_CLIENT_SECRET: upstream.idp.clientSecret,
    DEVICEGATE_UPSTREAM_MODE: 'device',
    DEVICEGATE_POLL_INTERVAL: '1',
    DEVICEGATE_DEVICE_KEY: KEY,
    DEVICEGATE_LOG_LEVEL: 'silent',
  });
  return startGateway(config, { log });
}

/** An MQTT 5 device subscribed to its `res` and everything below it (one filter: overlapping ones get copies). */
async function device5(id: string): Promise<TestDevice> {
  const d = await connectDevice({
    url: broker.url,
    deviceId: id,
    key: KEY,
    protocolVersion: 5,
    subscribe: false,
  });
  expect(await d.subscribe(`${d.resTopic}/#`, 1)).toEqual([1]);
  return d;
}

/** Every message the device receives with its MQTT 5 properties, in order. */
function withProperties(d: TestDevice): IPublishPacket[] {
  const packets: IPublishPacket[] = [];
  d.client.on('message', (_topic, _payload, packet) => packets.push(packet));
  return packets;
}

const ridOf = (p: IPublishPacket): unknown => (JSON.parse(p.payload.toString()) as { rid?: unknown }).rid;

/** A request with an MQTT 5 Response Topic and Correlation Data. */
function ask(d: TestDevice, action: string, body: object, responseTopic: string, correlation: string) {
  return d.request(action, body, {
    qos: 1,
    properties: { responseTopic, correlationData: Buffer.from(correlation) },
  });
}

beforeAll(async () => {
  [upstream, broker] = await Promise.all([startUpstream(), startBroker({ key: KEY, devices: DEVICES })]);
});

afterEach(closeAllDevices);

afterAll(async () => {
  await upstream?.close();
  await stopAll();
});

describe('gateway on MQTT 5', () => {
  let gw: StartedGateway;
  beforeAll(async () => {
    gw = await gateway('5');
  });
  afterAll(() => gw?.close());

  describe('MQTT 5 devices, no Response Topic: the relay contract unchanged', () => {
    relayScenarios('tv-m5', () => ({
      idp: upstream.idp,
      device: (id) => connectDevice({ url: broker.url, deviceId: id, key: KEY, protocolVersion: 5 }),
    }));
  });

  it('answers on the Response Topic below res with the same Correlation Data; the pushed token still goes to res', async () => {
    const d = await device5('tv-rpc');
    const packets = withProperties(d);
    const rpc = `${d.resTopic}/rpc-1`;
    await ask(d, 'authorize', { rid: 'r1' }, rpc, 'corr-1');
    const pending = await waitFor(() => packets.find((p) => ridOf(p) === 'r1'), 5000, 'pending');
    expect(pending.topic).toBe(rpc);
    expect(pending.properties?.correlationData).toEqual(Buffer.from('corr-1'));
    const body = JSON.parse(pending.payload.toString()) as Record<string, unknown>;
    expect(body).toMatchObject({ rid: 'r1', status: 'pending' });

    // status on the device's res itself, as a Response Topic, with other correlation data
    await ask(d, 'status', { rid: 'r1' }, d.resTopic, 'corr-2');
    const status = await waitFor(
      () => packets.find((p) => p.properties?.correlationData?.toString() === 'corr-2'),
      5000,
      'status answer',
    );
    expect(status.topic).toBe(d.resTopic);

    await approveDeviceCode(
      String(body.verification_uri_complete ?? body.verification_uri),
      String(body.user_code),
    );
    const token = await waitFor(
      () => packets.find((p) => p.payload.toString().includes('"authorized"')),
      10_000,
      'the token',
    );
    // a result pushed later is not an answer to the request: its own res, no correlation data
    expect(token.topic).toBe(d.resTopic);
    expect(token.properties?.correlationData).toBeUndefined();
    expect(packets.filter((p) => p.topic === rpc)).toHaveLength(1);
  });

  it('errors keep the RFC code in the payload and go to the Response Topic with the Correlation Data', async () => {
    const d = await device5('tv-rpc-err');
    const packets = withProperties(d);
    const rpc = `${d.resTopic}/rpc-err`;
    await d.request('authorize', 'not json', {
      qos: 1,
      properties: { responseTopic: rpc, correlationData: Buffer.from('c-bad') },
    });
    await ask(d, 'status', { rid: 'r-unknown' }, rpc, 'c-unknown');
    const bad = await waitFor(() =>
      packets.find((p) => p.properties?.correlationData?.toString() === 'c-bad'),
    );
    const unknown = await waitFor(() =>
      packets.find((p) => p.properties?.correlationData?.toString() === 'c-unknown'),
    );
    expect([bad.topic, unknown.topic]).toEqual([rpc, rpc]);
    expect(JSON.parse(bad.payload.toString())).toMatchObject({ status: 'error', error: 'invalid_request' });
    expect(JSON.parse(unknown.payload.toString())).toMatchObject({
      rid: 'r-unknown',
      status: 'error',
      error: 'expired_token',
    });
  });

  it("a Response Topic outside the device's own res subtree is not used: the answer goes to its own res, never there", async () => {
    const victim = await device5('tv-victim');
    const victimGot = withProperties(victim);
    const thief = await device5('tv-thief');
    const thiefGot = withProperties(thief);
    const elsewhere = [
      `${PREFIX}/tv-victim/res`,
      `${PREFIX}/tv-victim/res/rpc-1`,
      `${PREFIX}/tv-thief/req/status`,
      `${PREFIX}/tv-thief/other`,
      'elsewhere/tv-thief/res',
    ];
    for (const [i, topic] of elsewhere.entries()) {
      await ask(thief, 'authorize', { rid: `r-x${i}` }, topic, `c-${i}`);
    }
    for (const [i] of elsewhere.entries()) {
      const got = await waitFor(() => thiefGot.find((p) => ridOf(p) === `r-x${i}`), 5000, `reply ${i}`);
      expect(got.topic).toBe(thief.resTopic);
      expect(got.properties?.correlationData).toBeUndefined();
    }
    // the victim's barrier: a reply of its own, published after all of the thief's
    await ask(victim, 'status', { rid: 'r-barrier' }, victim.resTopic, 'c-v');
    await waitFor(() => victimGot.find((p) => ridOf(p) === 'r-barrier'), 5000, 'the barrier');
    expect(victimGot).toHaveLength(1);
    expect(
      await gw.metrics.value('devicegate_mqtt_denied_total', { op: 'reply', reason: 'not_own_response' }),
    ).toBe(elsewhere.length);
  });

  it('mosquitto_rr -V 5 as a device: asks with a Response Topic and prints the answer', async () => {
    const id = 'tv-rr';
    const out = await new Promise<string>((resolve, reject) => {
      execFile(
        'mosquitto_rr',
        [
          ...['-V', '5', '-h', '127.0.0.1', '-p', String(broker.port), '-q', '1', '-W', '10'],
          ...['-u', id, '-i', id, '-P', devicePassword(KEY, id)],
          ...['-t', `${PREFIX}/${id}/req/authorize`, '-e', `${PREFIX}/${id}/res/rr`],
          ...['-m', JSON.stringify({ rid: 'rr-1' })],
        ],
        (err, stdout, stderr) =>
          err === null ? resolve(stdout) : reject(new Error(`${err.message}\n${stderr}`)),
      );
    });
    expect(JSON.parse(out)).toMatchObject({ rid: 'rr-1', status: 'pending', user_code: expect.any(String) });
  });
});

describe('gateway on MQTT 3.1.1 (protocol 4)', () => {
  let gw: StartedGateway;
  beforeAll(async () => {
    gw = await gateway('4');
  });
  afterAll(() => gw?.close());

  it('an MQTT 5 device naming a Response Topic is answered on its res (the broker drops the properties)', async () => {
    const d = await device5('tv-v4gw');
    const packets = withProperties(d);
    await ask(d, 'authorize', { rid: 'r4' }, `${d.resTopic}/rpc-1`, 'corr-4');
    const pending = await waitFor(() => packets.find((p) => ridOf(p) === 'r4'), 5000, 'pending');
    expect(pending.topic).toBe(d.resTopic);
    expect(pending.properties?.correlationData).toBeUndefined();
    expect(JSON.parse(pending.payload.toString())).toMatchObject({ status: 'pending' });
  });
});
