/**
 * A token reply larger than the broker takes (issue 10, finding 5): a private Mosquitto with a small
 * `max_packet_size`, which it announces in its MQTT 5 CONNACK; the gateway on the external transport over MQTT 5; a
 * fake upstream that issues a 4 KB access token with a refresh token. Before the fix the gateway published the reply,
 * Mosquitto closed its connection, and every delivery attempt did it again while the device was never told. The
 * embedded broker has no MQTT 5 (aedes refuses it), so its devices' limit is configured:
 * `DEVICEGATE_MQTT_MAX_PACKET_SIZE`; before the fix a device there was sent the 4 KB reply its firmware cannot take.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.ts';
import { createLogger } from '../../src/observability/log.ts';
import { closeAllDevices, connectDevice } from '../helpers/device.ts';
import { type FakeUpstream, startFakeUpstream } from '../helpers/fake-upstream.ts';
import { type StartedGateway, startGateway } from '../helpers/gateway.ts';
import { type ManagedProcess, startMosquitto, stopAll } from '../helpers/procs.ts';

const MAX_PACKET = 2048;
const GATEWAY_ID = 'devicegate-oversize';

let broker: ManagedProcess;
let upstream: FakeUpstream;
let gw: StartedGateway;
let embeddedUpstream: FakeUpstream;
let embedded: StartedGateway;
const BIG_TOKEN = {
  access_token: 'a'.repeat(4000),
  token_type: 'Bearer',
  expires_in: 3600,
  refresh_token: 'rt-big',
};
const FLEET_KEY = 'oversize-fleet-key-0123456789';

/** How often the gateway connected to the broker, from Mosquitto's log. */
async function gatewayConnects(): Promise<number> {
  const text = await readFile(path.join(broker.dir, 'mosquitto.log'), 'utf8');
  return text
    .split('\n')
    .filter((l) => l.includes('New client connected') && l.includes(` as ${GATEWAY_ID} `)).length;
}

beforeAll(async () => {
  broker = await startMosquitto({
    config: [
      'allow_anonymous true',
      `max_packet_size ${MAX_PACKET}`,
      'log_dest file {dir}/mosquitto.log',
      'log_type notice',
      ...(process.getuid?.() === 0 ? ['user root'] : []),
    ],
  });
  upstream = await startFakeUpstream({ intervalSeconds: 1, token: BIG_TOKEN });
  embeddedUpstream = await startFakeUpstream({ intervalSeconds: 1, token: BIG_TOKEN });
  const config = loadConfig({
    DEVICEGATE_HTTP_PORT: '0',
    DEVICEGATE_MQTT_URL: broker.url,
    DEVICEGATE_MQTT_CLIENT_ID: GATEWAY_ID,
    DEVICEGATE_MQTT_PROTOCOL_VERSION: '5',
    DEVICEGATE_UPSTREAM_ISSUER: upstream.url,
    DEVICEGATE_UPSTREAM_CLIENT_ID: 'gw',
    DEVICEGATE_POLL_INTERVAL: '1',
    DEVICEGATE_DEVICE_KEY: FLEET_KEY,
    DEVICEGATE_SECRET: 's'.repeat(40),
    DEVICEGATE_LOG_LEVEL: 'silent',
  });
  gw = await startGateway(config, { log: createLogger('silent') });
  const embeddedConfig = loadConfig({
    DEVICEGATE_HTTP_PORT: '0',
    DEVICEGATE_MQTT_PORT: '0',
    DEVICEGATE_MQTT_MAX_PACKET_SIZE: String(MAX_PACKET),
    DEVICEGATE_UPSTREAM_ISSUER: embeddedUpstream.url,
    DEVICEGATE_UPSTREAM_CLIENT_ID: 'gw',
    DEVICEGATE_POLL_INTERVAL: '1',
    DEVICEGATE_DEVICE_KEY: FLEET_KEY,
    DEVICEGATE_SECRET: 's'.repeat(40),
    DEVICEGATE_LOG_LEVEL: 'silent',
  });
  embedded = await startGateway(embeddedConfig, { log: createLogger('silent') });
});

afterAll(async () => {
  await closeAllDevices();
  await gw?.close();
  await embedded?.close();
  await upstream?.close();
  await embeddedUpstream?.close();
  await stopAll();
});

describe("a token reply over the external broker's maximum packet size", () => {
  it('becomes a reply_too_large error reply, the refresh token is revoked, and the gateway stays connected', async () => {
    const tv = await connectDevice({ url: broker.url, deviceId: 'tv-big', protocolVersion: 5 });
    await tv.ask('authorize', { rid: 'r1' }, { status: 'pending' });
    const reply = await tv.waitForReply({ rid: 'r1', status: 'error' }, { timeoutMs: 15_000 });
    expect(reply.json).toMatchObject({ error: 'reply_too_large' });
    expect(String(reply.json?.error_description)).toMatch(/smaller scope/);
    expect(upstream.revoked).toEqual(['rt-big']);

    // the flow is over: asking again gets the same error, not a new delivery attempt
    const again = await tv.ask('status', { rid: 'r1' }, { status: 'error' });
    expect(again.json).toMatchObject({ error: 'reply_too_large' });
    expect(await gatewayConnects()).toBe(1);
    expect(gw.transport.status().connected).toBe(true);
  });

  it('a reply over the limit is refused before it is sent, not published into a disconnect', async () => {
    const big = {
      v: 1 as const,
      rid: 'r2',
      status: 'authorized' as const,
      access_token: 'b'.repeat(4000),
      token_type: 'Bearer',
    };
    await expect(gw.transport.publish('tv-big', big)).rejects.toThrow(/over the broker's 2048/);
    const tv = await connectDevice({ url: broker.url, deviceId: 'tv-small', protocolVersion: 5 });
    // the connection still works: a small reply goes through
    await tv.ask('status', { rid: 'nope' }, { status: 'error' });
    expect(await gatewayConnects()).toBe(1);
  });
});

describe("a token reply over the embedded broker's DEVICEGATE_MQTT_MAX_PACKET_SIZE", () => {
  it('becomes a reply_too_large error reply and the refresh token is revoked', async () => {
    const tv = await connectDevice({ url: embedded.mqttUrl, deviceId: 'tv-big', key: FLEET_KEY });
    await tv.ask('authorize', { rid: 'r1' }, { status: 'pending' });
    const reply = await tv.waitForReply({ rid: 'r1', status: 'error' }, { timeoutMs: 15_000 });
    expect(reply.json).toMatchObject({ error: 'reply_too_large' });
    expect(String(reply.json?.error_description)).toContain(`(${MAX_PACKET} bytes)`);
    expect(embeddedUpstream.revoked).toEqual(['rt-big']);
    expect(tv.received.every((r) => r.payload.length < MAX_PACKET)).toBe(true);
  });
});
