/**
 * The ACL cases of the embedded broker (embedded-broker.test.ts) mirrored against a real Mosquitto running the
 * shipped deploy/mosquitto files (mosquitto.conf, acl with %u patterns, make-passwords.sh). Mosquitto's acl_file
 * grants every SUBSCRIBE and checks read access when it delivers, so "cannot read" is asserted as "never delivered"
 * (with a barrier message that arrives after the one that must not), not as a refused SUBACK.
 * The gateway side is the real ExternalBroker transport with a recording handler.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import mqtt from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { devicePassword } from '../../src/core/crypto.ts';
import { createLogger } from '../../src/observability/log.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import { ExternalBroker } from '../../src/transport/external.ts';
import { topics } from '../../src/transport/topics.ts';
import type { IncomingRequest } from '../../src/transport/types.ts';
import {
  closeAllDevices,
  connectDevice,
  connectRefused,
  fixedPendingReply,
  ridOf,
  type TestDevice,
} from '../helpers/device.ts';

import { stopAll, waitFor } from '../helpers/procs.ts';
import { type Broker, GATEWAY_PASSWORD, PREFIX, startBroker } from './cluster.ts';

const KEY = 'mosquitto-acl-test-fleet-key';
const DEVICES = [
  'tv-victim',
  'tv-thief',
  'tv-forger',
  'tv-owner',
  'tv-attacker',
  'tv-retain',
  'tv-late',
  'tv-joiner',
  'tv-sender',
];

let broker: Broker;
let transport: ExternalBroker;
const calls: IncomingRequest[] = [];

const callsWithRid = (rid: string) => calls.filter((c) => ridOf(c.payload) === rid);

function device(id: string, extra: Partial<Parameters<typeof connectDevice>[0]> = {}): Promise<TestDevice> {
  return connectDevice({ url: broker.url, deviceId: id, key: KEY, ...extra });
}

function run(cmd: string, args: string[]): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { timeout: 8000 }, (_err, _stdout, stderr) =>
      resolve({ code: child.exitCode, stderr }),
    );
  });
}

function newTransport(shareGroup: string, username = 'devicegate-1'): ExternalBroker {
  return new ExternalBroker({
    url: broker.url,
    username,
    password: GATEWAY_PASSWORD,
    clientId: username,
    shareGroup,
    topics: topics(PREFIX),
    log: createLogger('silent'),
    metrics: new Metrics(),
  });
}

beforeAll(async () => {
  broker = await startBroker({ key: KEY, devices: DEVICES });
  // a group name devices cannot know, as the gateway derives it from its secret
  transport = newTransport(`devicegate-${randomBytes(8).toString('hex')}`);
  await transport.start(async (req) => {
    calls.push(req);
    await transport.publish(req.deviceId, fixedPendingReply(ridOf(req.payload)));
  });
});

afterEach(closeAllDevices);

afterAll(async () => {
  await transport?.close();
  await stopAll();
});

describe('Mosquitto with the shipped ACL', () => {
  it("never delivers A's replies to device B, whatever B subscribes to (direct, +, #, $share)", async () => {
    const a = await device('tv-victim');
    const b = await device('tv-thief');
    const filters = [
      a.resTopic,
      `${PREFIX}/+/res`,
      `${PREFIX}/tv-victim/#`,
      `${PREFIX}/#`,
      '#',
      '+/+/+/res',
      `$share/x/${a.resTopic}`,
      `$share/x/${PREFIX}/+/res`,
    ];
    // Mosquitto grants the SUBACK (acl_file checks at delivery); what matters is that nothing arrives
    for (const filter of filters) await b.subscribe(filter);
    expect(b.closed).toBe(false);

    await transport.publish('tv-victim', fixedPendingReply('r-secret'));
    await a.waitForReply({ rid: 'r-secret' });
    // published after A's reply by the same client: once B has it, B would have had A's too
    await transport.publish('tv-thief', fixedPendingReply('r-barrier'));
    await b.waitForReply({ rid: 'r-barrier' });
    expect(b.received.map((r) => r.json?.['rid'])).toEqual(['r-barrier']);
  });

  it("never delivers A's requests to device B (req filters, the documented share filter)", async () => {
    const a = await device('tv-victim');
    const b = await device('tv-thief');
    for (const filter of [`${PREFIX}/+/req/+`, `${PREFIX}/tv-victim/req/#`, `$share/x/${PREFIX}/+/req/+`]) {
      await b.subscribe(filter);
    }
    await a.ask('authorize', { rid: 'r-a-req' });
    await transport.publish('tv-thief', fixedPendingReply('r-barrier-2'));
    await b.waitForReply({ rid: 'r-barrier-2' });
    expect(b.received.map((r) => r.topic)).toEqual([b.resTopic]);
  });

  it("drops device B's publishes to A's req topic: the gateway never sees them", async () => {
    // mosquitto_pub first: it logs in as tv-forger too, which would take the mqtt.js connection over
    const cli = await run('mosquitto_pub', [
      ...[
        '-h',
        '127.0.0.1',
        '-p',
        String(broker.port),
        '-V',
        'mqttv311',
        '-i',
        'tv-forger',
        '-u',
        'tv-forger',
      ],
      ...['-P', devicePassword(KEY, 'tv-forger'), '-q', '1', '-t', `${PREFIX}/tv-victim/req/cancel`],
      ...['-m', '{"rid":"r-forged-cli"}'],
    ]);
    // Mosquitto answers PUBACK and drops the message (MQTT 3.1.1 has no way to refuse a PUBLISH)
    expect(cli.code).toBe(0);
    const b = await device('tv-forger');
    await b.publish(`${PREFIX}/tv-victim/req/authorize`, JSON.stringify({ rid: 'r-forged' }));
    // B's own request, sent after the forged ones, reaches the gateway: the forged ones would have by now
    await b.ask('status', { rid: 'r-after-forgery' });
    expect(callsWithRid('r-after-forgery')).toHaveLength(1);
    expect(callsWithRid('r-forged')).toEqual([]);
    expect(callsWithRid('r-forged-cli')).toEqual([]);
    expect(
      calls.filter((c) => c.deviceId === 'tv-victim' && ridOf(c.payload).startsWith('r-forged')),
    ).toEqual([]);
  });

  it('refuses wrong, missing, borrowed and other-fleet passwords, and unknown users', async () => {
    const codes = [
      (await connectRefused({ url: broker.url, deviceId: 'tv-victim', password: 'not-the-hmac' })).code,
      (await connectRefused({ url: broker.url, deviceId: 'tv-victim', password: null })).code,
      (
        await connectRefused({
          url: broker.url,
          deviceId: 'tv-victim',
          password: devicePassword(KEY, 'tv-thief'),
        })
      ).code,
      (await connectRefused({ url: broker.url, deviceId: 'tv-victim', key: 'another-fleet-key' })).code,
      (await connectRefused({ url: broker.url, deviceId: 'tv-unknown', key: KEY })).code,
      // a device cannot log in as a gateway instance with its own password
      (
        await connectRefused({
          url: broker.url,
          deviceId: 'devicegate-1',
          password: devicePassword(KEY, 'devicegate-1'),
        })
      ).code,
    ];
    // MQTT 3.1.1 CONNACK 4 (bad user name or password) or 5 (not authorized): Mosquitto 2 answers 5
    for (const code of codes) expect([4, 5]).toContain(code);
  });

  it("a client id other than the username cannot take over another device's session (use_username_as_clientid)", async () => {
    const victim = await device('tv-owner');
    // the attacker's own valid credentials, the victim's client id: Mosquitto replaces the id with the username
    const attacker = await device('tv-attacker', { clientId: 'tv-owner', subscribe: false });
    expect(await attacker.subscribe(`${PREFIX}/tv-owner/res`)).toBeDefined();
    expect(victim.closed).toBe(false);
    const reply = await victim.ask('status', { rid: 'r-owner' });
    expect(reply.json?.['rid']).toBe('r-owner');
    // the attacker's request is handled as its own device, never as the victim
    await attacker.request('status', { rid: 'r-attacker' });
    await waitFor(() => callsWithRid('r-attacker')[0], 5000, 'the attacker request');
    expect(callsWithRid('r-attacker')[0]!.deviceId).toBe('tv-attacker');
    expect(attacker.received).toEqual([]);
    expect(victim.closed).toBe(false);
  });

  it('two gateway instances sharing one username would take each other over: each needs its own', async () => {
    // why deploy/mosquitto/acl and docker-compose.yml give each instance a username of its own
    const connect = (clientId: string) =>
      new Promise<mqtt.MqttClient>((resolve, reject) => {
        const c = mqtt.connect(broker.url, {
          username: 'devicegate-2',
          password: GATEWAY_PASSWORD,
          clientId,
          reconnectPeriod: 0,
        });
        c.once('connect', () => resolve(c));
        c.once('error', reject);
      });
    const first = await connect('instance-a');
    const closed = new Promise<void>((resolve) => first.once('close', () => resolve()));
    const second = await connect('instance-b');
    try {
      await closed;
      expect(first.connected).toBe(false);
      expect(second.connected).toBe(true);
    } finally {
      first.end(true);
      second.end(true);
    }
  });

  it('the gateway never sets retain: replies arrive with retain 0 and a later subscriber finds nothing stored', async () => {
    const d = await device('tv-retain');
    const r = await d.ask('authorize', { rid: 'r-ret' });
    expect(r).toMatchObject({ qos: 1, retain: false });
    await d.end();
    const late = await device('tv-retain');
    // a barrier sent after the (re)subscription: a retained reply would have come first
    await transport.publish('tv-retain', fixedPendingReply('r-ret-barrier'));
    await late.waitForReply({ rid: 'r-ret-barrier' });
    expect(late.received.map((m) => m.json?.['rid'])).toEqual(['r-ret-barrier']);
  });

  it('disconnects a device that publishes a retained request (retain_available false); nothing reaches the gateway', async () => {
    const d = await device('tv-late');
    d.client.publish(d.reqTopic('authorize'), JSON.stringify({ rid: 'r-retained' }), {
      qos: 1,
      retain: true,
    });
    await d.waitForClose();
    // nothing was stored either: a new subscriber of the request topics gets no replayed copy
    const again = await device('tv-late');
    await again.ask('status', { rid: 'r-late-barrier' });
    expect(callsWithRid('r-retained')).toEqual([]);
  });
});

describe("the gateways' share group", () => {
  it('a device that joins a share group with a known name swallows part of the requests (why the name is secret)', async () => {
    // a gateway-like client in a group whose name devices know, and a device that joins it
    const known = newTransport('devicegate', 'devicegate-2');
    const seen: string[] = [];
    await known.start(async (req) => {
      seen.push(ridOf(req.payload));
    });
    try {
      const joiner = await device('tv-joiner', { subscribe: false });
      await joiner.subscribe(`$share/devicegate/${PREFIX}/+/req/+`);
      const sender = await device('tv-sender');
      const rids = Array.from({ length: 10 }, (_, i) => `r-share-${i}`);
      for (const rid of rids) await sender.request('status', { rid });
      // the secret-group transport gets every one (it is a group of its own) ...
      await waitFor(() => rids.every((rid) => callsWithRid(rid).length === 1), 5000, 'all requests');
      // ... while in the known group Mosquitto assigned some to the device and dropped them at delivery
      await new Promise((r) => setTimeout(r, 200));
      expect(seen.filter((rid) => rids.includes(rid)).length).toBeLessThan(rids.length);
      expect(joiner.received).toEqual([]);
    } finally {
      await known.close();
    }
  });

  it('a device that subscribes with the documented group name takes nothing from the gateway', async () => {
    const joiner = await device('tv-joiner', { subscribe: false });
    await joiner.subscribe(`$share/devicegate/${PREFIX}/+/req/+`);
    await joiner.subscribe(`$share/devicegate/${PREFIX}/#`);
    const sender = await device('tv-sender');
    const rids = Array.from({ length: 10 }, (_, i) => `r-join-${i}`);
    for (const rid of rids) await sender.ask('status', { rid });
    for (const rid of rids) expect(callsWithRid(rid)).toHaveLength(1);
    expect(joiner.received).toEqual([]);
  });
});
