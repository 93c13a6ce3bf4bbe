/**
 * The embedded aedes transport at the MQTT level: device authentication (README, "Device credentials"), publish/subscribe/will ACLs,
 * MQTT 5 refusal, raw-socket protocol abuse (docs/security.md, "Devices and MQTT") and shutdown.
 * Real aedes, real mqtt.js clients, the mosquitto CLI clients and hand-made packets; a recording handler answers
 * every request with a fixed reply through `broker.publish`.
 */
import { execFile } from 'node:child_process';
import { capturingLogger } from '../helpers/log.ts';
import MemoryPersistence from 'aedes-persistence/asyncPersistence.js';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { devicePassword } from '../../src/core/crypto.ts';
import { UnavailableError } from '../../src/core/errors.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import { MAX_IN_FLIGHT } from '../../src/transport/dispatcher.ts';
import { EmbeddedBroker, MAX_PACKET_BYTES } from '../../src/transport/embedded.ts';
import { topics } from '../../src/transport/topics.ts';
import type { DeviceRequestHandler, IncomingRequest } from '../../src/transport/types.ts';
import {
  closeAllDevices,
  connectDevice,
  connectRefused,
  fixedPendingReply,
  ridOf,
} from '../helpers/device.ts';
import { frame, rawConnect, rawDevice, type RawConnection } from '../helpers/raw.ts';

import { waitFor } from '../helpers/procs.ts';

const KEY = 'embedded-broker-test-fleet-key';
const PREFIX = 'devicegate/v1';

function run(
  cmd: string,
  args: string[],
  timeoutMs = 8000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { timeout: timeoutMs }, (_err, stdout, stderr) =>
      resolve({ code: child.exitCode, stdout, stderr }),
    );
  });
}

function cliAuth(port: number, id: string, password = devicePassword(KEY, id)): string[] {
  return ['-h', '127.0.0.1', '-p', String(port), '-V', 'mqttv311', '-i', id, '-u', id, '-P', password];
}

afterEach(closeAllDevices);

describe('EmbeddedBroker, hmac device auth', () => {
  const metrics = new Metrics();
  const logLines: string[] = [];
  const calls: IncomingRequest[] = [];
  let broker: EmbeddedBroker;
  let url: string;

  const handler: DeviceRequestHandler = (req) => {
    calls.push(req);
    if (req.rawAction === 'throw-sync') throw new Error('handler bug (sync)');
    if (req.rawAction === 'reject') return Promise.reject(new Error('handler bug (async)'));
    return broker.publish(req.deviceId, fixedPendingReply(ridOf(req.payload)));
  };
  const callsWithRid = (rid: string) => calls.filter((c) => ridOf(c.payload) === rid);

  beforeAll(async () => {
    broker = new EmbeddedBroker({
      host: '127.0.0.1',
      port: 0,
      topics: topics(PREFIX),
      deviceAuth: 'hmac',
      deviceKey: KEY,
      log: capturingLogger(logLines),
      metrics,
    });
    await broker.start(handler);
    url = `mqtt://127.0.0.1:${broker.port}`;
  });
  afterAll(async () => {
    await broker?.close();
  });

  it('carries a request from an authenticated device to the handler and the reply back on its res (QoS 1, not retained)', async () => {
    expect(broker.port).toBeGreaterThan(0);
    const tv = await connectDevice({ url, deviceId: 'tv-good', key: KEY });
    const reply = await tv.ask('authorize', { rid: 'r-good', scope: 'openid' });
    expect(reply).toMatchObject({ topic: `${PREFIX}/tv-good/res`, qos: 1, retain: false });
    expect(reply.json).toEqual(fixedPendingReply('r-good'));

    const [call] = callsWithRid('r-good');
    expect(call).toMatchObject({
      deviceId: 'tv-good',
      action: 'authorize',
      rawAction: 'authorize',
      remoteAddress: '127.0.0.1',
    });
    expect(JSON.parse(call!.payload.toString('utf8'))).toEqual({ rid: 'r-good', scope: 'openid' });

    // a reply the gateway publishes on its own (scheduler, delivery) arrives the same way
    await broker.publish('tv-good', fixedPendingReply('r-pushed'));
    const pushed = await tv.waitForReply({ rid: 'r-pushed' });
    expect(pushed).toMatchObject({ qos: 1, retain: false, dup: false });

    expect(broker.status()).toEqual({
      connected: true,
      detail: expect.stringMatching(/^embedded aedes on 127\.0\.0\.1:\d+, [1-9]\d* clients$/),
    });
  });

  it('passes unknown actions and oversize payloads on the device own topic to the handler instead of refusing them', async () => {
    const tv = await connectDevice({ url, deviceId: 'tv-sloppy', key: KEY });
    await tv.ask('frobnicate', { rid: 'r-unknown' });
    expect(callsWithRid('r-unknown')[0]).toMatchObject({ action: undefined, rawAction: 'frobnicate' });

    // above the contract's 4 KiB but below the transport cap: the handler answers, the device stays connected
    const big = JSON.stringify({ rid: 'r-big', pad: 'x'.repeat(MAX_PACKET_BYTES - 4096) });
    await tv.ask('authorize', JSON.parse(big) as { rid: string });
    expect(callsWithRid('r-big')[0]!.payload.length).toBe(big.length);
    expect(tv.closed).toBe(false);
  });

  it('refuses wrong, missing and borrowed passwords with "bad username or password"', async () => {
    const before = await metrics.value('devicegate_mqtt_refused_connects_total', { reason: 'bad_password' });
    const wrong = await connectRefused({ url, deviceId: 'tv-a', password: 'not-the-hmac' });
    expect(wrong.code).toBe(4);
    expect(wrong.message).toMatch(/Bad username or password/);
    expect((await connectRefused({ url, deviceId: 'tv-a', password: null })).code).toBe(4);
    // tv-b's valid password does not open tv-a
    expect(
      (await connectRefused({ url, deviceId: 'tv-a', password: devicePassword(KEY, 'tv-b') })).code,
    ).toBe(4);
    // a password made with another fleet key
    expect((await connectRefused({ url, deviceId: 'tv-a', key: 'another-fleet-key' })).code).toBe(4);
    expect(await metrics.value('devicegate_mqtt_refused_connects_total', { reason: 'bad_password' })).toBe(
      before + 4,
    );
  });

  it('refuses a client id that differs from the username, even with the right password', async () => {
    const err = await connectRefused({ url, deviceId: 'tv-a', key: KEY, clientId: 'tv-other' });
    expect(err.code).toBe(5);
    expect(err.message).toMatch(/Not authorized/);
  });

  it("does not let a device take over another device's session by reusing its client id", async () => {
    const victim = await connectDevice({ url, deviceId: 'tv-owner', key: KEY });
    // the attacker's own valid credentials, the victim's client id
    expect(
      (await connectRefused({ url, deviceId: 'tv-attacker', key: KEY, clientId: 'tv-owner' })).code,
    ).toBe(5);
    expect(victim.closed).toBe(false);
    expect((await victim.ask('status', { rid: 'r-owner' })).json?.['rid']).toBe('r-owner');
  });

  it.each(['#', '+', '../x', '$SYS', 'tv/1', 'tv a', 'a'.repeat(65)])(
    'refuses the username %j (client id = username, password = its HMAC)',
    async (name) => {
      const err = await connectRefused({ url, deviceId: name, key: KEY });
      expect(err.code).toBe(4);
    },
  );

  it('refuses an empty username and an empty client id', async () => {
    expect((await connectRefused({ url, deviceId: '', key: KEY })).code).toBe(4);
    // empty client id with a valid username: aedes would invent an id, which never equals the username
    const raw = await rawConnect(broker.port);
    raw.send({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: 4,
      clientId: '',
      clean: true,
      keepalive: 30,
      username: 'tv-a',
      password: Buffer.from(devicePassword(KEY, 'tv-a')),
    });
    const connack = await raw.waitForPacket('connack');
    expect(connack).toMatchObject({ cmd: 'connack', returnCode: 5 });
    await raw.waitForClose();
  });

  it('refuses MQTT 5 clients with CONNACK "unacceptable protocol version" (aedes 1.x speaks 3.1.1)', async () => {
    const err = await connectRefused({ url, deviceId: 'tv-v5', key: KEY, protocolVersion: 5 });
    expect(err.code).toBe(1);
    expect(err.message).toBe('Connection refused: Unacceptable protocol version');

    const cli = await run('mosquitto_pub', [
      ...cliAuth(broker.port, 'tv-v5').map((a) => (a === 'mqttv311' ? 'mqttv5' : a)),
      '-t',
      `${PREFIX}/tv-v5/req/authorize`,
      '-m',
      '{"rid":"r-v5"}',
    ]);
    expect(cli.code).not.toBe(0);
    expect(cli.stderr).toMatch(/Protocol Version/i);
    expect(callsWithRid('r-v5')).toEqual([]);
  });

  it('refuses keepalive 0 (a connection with no liveness check) with CONNACK 6', async () => {
    expect((await connectRefused({ url, deviceId: 'tv-ka', key: KEY, keepalive: 0 })).code).toBe(6);
  });

  it("does not let device B subscribe to A's res by any route (SUBACK 0x80, nothing delivered)", async () => {
    const a = await connectDevice({ url, deviceId: 'tv-victim', key: KEY });
    const b = await connectDevice({ url, deviceId: 'tv-thief', key: KEY });
    const filters = [
      a.resTopic,
      `${PREFIX}/+/res`,
      `${PREFIX}/tv-victim/#`,
      `${PREFIX}/tv-victim/req/+`,
      '#',
      '+/+/+/res',
      `$share/x/${a.resTopic}`,
      `$share/x/${PREFIX}/+/res`,
      '$SYS/#',
    ];
    for (const filter of filters) expect(await b.subscribe(filter), filter).toEqual([128]);
    expect(b.closed).toBe(false);

    await broker.publish('tv-victim', fixedPendingReply('r-secret'));
    await a.waitForReply({ rid: 'r-secret' });
    // a reply to B published after A's is routed after it: once B has it, B would have had A's too
    await broker.publish('tv-thief', fixedPendingReply('r-barrier'));
    await b.waitForReply({ rid: 'r-barrier' });
    expect(b.received.map((r) => r.json?.['rid'])).toEqual(['r-barrier']);
  });

  it('gives a mosquitto_sub (3.1.1) device its replies and refuses it any other topic', async () => {
    const sub = run('mosquitto_sub', [
      ...cliAuth(broker.port, 'tv-cli'),
      '-q',
      '1',
      '-t',
      `${PREFIX}/tv-cli/res`,
      '-C',
      '1',
      '-v',
    ]);
    let done = false;
    void sub.then(() => (done = true));
    // publish until the subscriber (which needs a moment to connect and subscribe) has received one
    await waitFor(
      async () => {
        await broker.publish('tv-cli', fixedPendingReply('r-cli'));
        await new Promise((r) => setTimeout(r, 50));
        return done;
      },
      6000,
      'mosquitto_sub to receive its reply',
    );
    const { code, stdout } = await sub;
    expect(code).toBe(0);
    expect(stdout.trim()).toBe(`${PREFIX}/tv-cli/res ${JSON.stringify(fixedPendingReply('r-cli'))}`);

    const thief = await run('mosquitto_sub', [
      ...cliAuth(broker.port, 'tv-cli-thief'),
      '-t',
      `${PREFIX}/tv-cli/res`,
      '-t',
      '#',
      '-C',
      '1',
      '-W',
      '3',
    ]);
    expect(thief.stderr).toMatch(/All subscription requests were denied/);
  });

  it("disconnects device B when it publishes to A's req topic and never hands that request to the handler", async () => {
    const before = await metrics.value('devicegate_mqtt_denied_total', {
      op: 'publish',
      reason: 'not_own_request',
    });
    const b = await connectDevice({ url, deviceId: 'tv-forger', key: KEY });
    b.client.publish(`${PREFIX}/tv-victim/req/authorize`, JSON.stringify({ rid: 'r-forged' }), { qos: 1 });
    await b.waitForClose();

    const cli = await run('mosquitto_pub', [
      ...cliAuth(broker.port, 'tv-forger-cli'),
      '-q',
      '1',
      '-t',
      `${PREFIX}/tv-victim/req/cancel`,
      '-m',
      '{"rid":"r-forged-cli"}',
    ]);
    expect(cli.code).not.toBe(0);
    expect(cli.stderr).toMatch(/connection was lost/i);

    // a later request of a good device has been handled, so the forged ones would have been too
    const good = await connectDevice({ url, deviceId: 'tv-after-forgery', key: KEY });
    await good.ask('status', { rid: 'r-after-forgery' });
    expect(callsWithRid('r-forged')).toEqual([]);
    expect(callsWithRid('r-forged-cli')).toEqual([]);
    expect(calls.filter((c) => c.deviceId === 'tv-victim')).toEqual([]);
    expect(
      await metrics.value('devicegate_mqtt_denied_total', { op: 'publish', reason: 'not_own_request' }),
    ).toBe(before + 2);
  });

  it.each([
    ['$SYS', '$SYS/broker/x'],
    ['$-prefixed', '$CONTROL/dynamic-security/v1'],
    ['another device res', `${PREFIX}/tv-victim/res`],
    ['own res', `${PREFIX}/tv-pub/res`],
    ['two levels below req', `${PREFIX}/tv-pub/req/authorize/extra`],
    ['outside the prefix', 'elsewhere/tv-pub/req/authorize'],
  ])('disconnects a device publishing to %s', async (_what, topic) => {
    const d = await connectDevice({ url, deviceId: 'tv-pub', key: KEY });
    d.client.publish(topic, JSON.stringify({ rid: 'r-bad-topic' }), { qos: 0 });
    await d.waitForClose();
    expect(callsWithRid('r-bad-topic')).toEqual([]);
  });

  it('disconnects a device publishing a retained message, even on its own req topic', async () => {
    const d = await connectDevice({ url, deviceId: 'tv-retain', key: KEY });
    d.client.publish(d.reqTopic('authorize'), JSON.stringify({ rid: 'r-retained' }), {
      qos: 1,
      retain: true,
    });
    await d.waitForClose();
    const probe = await connectDevice({ url, deviceId: 'tv-retain-probe', key: KEY });
    await probe.ask('status', { rid: 'r-retain-probe' });
    expect(callsWithRid('r-retained')).toEqual([]);
    expect(
      await metrics.value('devicegate_mqtt_denied_total', { op: 'publish', reason: 'retain' }),
    ).toBeGreaterThan(0);
  });

  it.each([`${PREFIX}/tv-wild/req/+`, `${PREFIX}/+/req/authorize`, `${PREFIX}/tv-wild/req/#`])(
    'disconnects a device publishing to the wildcard topic %s (hand-made PUBLISH)',
    async (topic) => {
      const raw = await rawDevice(broker.port, 'tv-wild', { key: KEY });
      raw.send({
        cmd: 'publish',
        topic,
        payload: '{"rid":"r-wild"}',
        qos: 1,
        messageId: 1,
        retain: false,
        dup: false,
      });
      await raw.waitForClose();
      expect(raw.packets.map((p) => p.cmd)).toEqual(['connack']);
      expect(callsWithRid('r-wild')).toEqual([]);
    },
  );

  it('refuses at CONNECT a Will aimed anywhere but the device own req topics, so it is never delivered', async () => {
    const victim = await connectDevice({ url, deviceId: 'tv-will-victim', key: KEY });
    const forged = JSON.stringify({ v: 1, rid: 'r-will', status: 'authorized', access_token: 'forged' });
    const wills = [
      { topic: victim.resTopic, payload: forged, qos: 1 as const, retain: false },
      { topic: '$SYS/broker/clients', payload: forged, qos: 0 as const, retain: false },
      { topic: '$CONTROL/dynamic-security/v1', payload: forged, qos: 0 as const, retain: false },
      {
        topic: `${PREFIX}/tv-will-victim/req/cancel`,
        payload: '{"rid":"r-will"}',
        qos: 1 as const,
        retain: false,
      },
      { topic: `${PREFIX}/tv-willer/req/cancel`, payload: '{"rid":"r-will"}', qos: 1 as const, retain: true },
      {
        topic: `${PREFIX}/tv-willer/req/${'a/'.repeat(999)}a`,
        payload: '{"rid":"r-will"}',
        qos: 0 as const,
        retain: false,
      },
    ];
    for (const will of wills) {
      const err = await connectRefused({ url, deviceId: 'tv-willer', key: KEY, will });
      expect(err.code, will.topic.slice(0, 60)).toBe(5);
    }
    expect(
      await metrics.value('devicegate_mqtt_refused_connects_total', { reason: 'will_not_allowed' }),
    ).toBe(wills.length);

    // refused connections leave no session behind, so no Will fires: only the barrier reaches the victim
    await broker.publish('tv-will-victim', fixedPendingReply('r-will-barrier'));
    await victim.waitForReply({ rid: 'r-will-barrier' });
    expect(victim.received.map((r) => r.json?.['rid'])).toEqual(['r-will-barrier']);
    expect(callsWithRid('r-will')).toEqual([]);
  });

  it('accepts a Will on the device own req topic and hands it to the handler when the device drops', async () => {
    const d = await connectDevice({
      url,
      deviceId: 'tv-will-ok',
      key: KEY,
      will: {
        topic: `${PREFIX}/tv-will-ok/req/cancel`,
        payload: '{"rid":"r-will-ok"}',
        qos: 1,
        retain: false,
      },
    });
    d.client.stream.destroy(); // no DISCONNECT: the broker publishes the Will
    const call = await waitFor(() => callsWithRid('r-will-ok')[0], 5000, 'the Will to reach the handler');
    expect(call).toMatchObject({ deviceId: 'tv-will-ok', action: 'cancel' });
  });

  it('delivers a reply to an offline device with a persistent session when it comes back', async () => {
    const first = await connectDevice({ url, deviceId: 'tv-sleepy', key: KEY, clean: false });
    await first.end(true);
    await broker.publish('tv-sleepy', fixedPendingReply('r-queued'));
    const again = await connectDevice({
      url,
      deviceId: 'tv-sleepy',
      key: KEY,
      clean: false,
      subscribe: false,
    });
    const reply = await again.waitForReply({ rid: 'r-queued' });
    expect(reply).toMatchObject({ topic: `${PREFIX}/tv-sleepy/res`, qos: 1, retain: false });
  });

  it('keeps no outgoing queue for clean-session devices that acknowledge replies; a persistent session still has one', async () => {
    // The in-memory persistence creates a queue entry for any client id its outgoingClearMessageId sees and never
    // drops it; DevicePersistence must keep clean-session clients (every PUBACK) away from it.
    const clears = vi.spyOn(MemoryPersistence.prototype, 'outgoingClearMessageId');
    try {
      const clients = () => Number(/, (\d+) clients$/.exec(broker.status().detail)?.[1]);
      const before = clients();
      const fleet = await Promise.all(
        Array.from({ length: 20 }, (_, i) => connectDevice({ url, deviceId: `tv-clean-${i}`, key: KEY })),
      );
      const replies = await Promise.all(fleet.map((d, i) => d.ask('status', { rid: `r-clean-${i}` })));
      expect(replies.every((r) => r.qos === 1)).toBe(true);
      await Promise.all(fleet.map((d) => d.end(true)));
      // aedes handles a client's packets in order: its PUBACKs before the DISCONNECT that ends it
      await waitFor(() => clients() <= before, 5000, 'the clean-session devices to be gone');

      const kept = await connectDevice({ url, deviceId: 'tv-kept', key: KEY, clean: false });
      await kept.ask('status', { rid: 'r-kept' });
      await waitFor(
        () => clears.mock.calls.some(([client]) => client.id === 'tv-kept'),
        5000,
        'the persistent session to clear its acknowledged reply',
      );
      expect(clears.mock.calls.filter(([client]) => client.id.startsWith('tv-clean-'))).toEqual([]);
    } finally {
      clears.mockRestore();
    }
  });

  describe('raw-socket abuse: the socket is closed, the broker and other devices carry on', () => {
    const hello = () => ({
      cmd: 'publish' as const,
      topic: `${PREFIX}/tv-raw/req/authorize`,
      payload: '{"rid":"r-raw"}',
      qos: 0 as const,
      retain: false,
      dup: false,
    });

    async function expectClosedWithoutConnack(send: (c: RawConnection) => void): Promise<void> {
      const raw = await rawConnect(broker.port);
      send(raw);
      // closed well before the 10 s CONNECT timeout: by the broker's checks, not by a timer
      await raw.waitForClose(5000);
      expect(raw.packets).toEqual([]);
    }

    it.each<[string, (c: RawConnection) => void]>([
      ['PUBLISH before CONNECT', (c) => c.send(hello())],
      [
        'SUBSCRIBE before CONNECT',
        (c) => c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '#', qos: 0 }] }),
      ],
      ['PINGREQ before CONNECT', (c) => c.send({ cmd: 'pingreq' })],
      ['Remaining Length in 5 bytes', (c) => c.send(Buffer.from([0x10, 0x80, 0x80, 0x80, 0x80, 0x01]))],
      ['a 256 MB Remaining Length with no body', (c) => c.send(Buffer.from([0x10, 0xff, 0xff, 0xff, 0x7f]))],
      ['a CONNECT above the packet cap', (c) => c.send(frame(0x10, Buffer.alloc(MAX_PACKET_BYTES + 1)))],
      ['reserved packet type 0', (c) => c.send(Buffer.from([0x00, 0x00]))],
      ['reserved packet type 15', (c) => c.send(Buffer.from([0xf0, 0x00]))],
      ['PUBLISH with QoS 3', (c) => c.send(frame(0x36, Buffer.from([0x00, 0x01, 0x61, 0x00, 0x01])))],
      ['garbage', (c) => c.send(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'))],
    ])('%s', async (_what, send) => {
      await expectClosedWithoutConnack(send);
    });

    it('closes an authenticated device that sends topics of 101 and 1000 levels, or a 1 MB PUBLISH', async () => {
      const bystander = await connectDevice({ url, deviceId: 'tv-bystander', key: KEY });
      const tooLarge = await metrics.value('devicegate_mqtt_dropped_connections_total', {
        reason: 'packet_too_large',
      });
      const deep = (levels: number) => `${PREFIX}/tv-raw/req/${'a/'.repeat(levels - 4)}a`;
      const abuses: Array<[string, (c: RawConnection) => void]> = [
        ['PUBLISH 101 levels', (c) => c.send({ ...hello(), topic: deep(101) })],
        ['PUBLISH 1000 levels', (c) => c.send({ ...hello(), topic: deep(1000) })],
        [
          'SUBSCRIBE 101 levels',
          (c) => c.send({ cmd: 'subscribe', messageId: 2, subscriptions: [{ topic: deep(101), qos: 1 }] }),
        ],
        [
          'SUBSCRIBE 1000 levels',
          (c) => c.send({ cmd: 'subscribe', messageId: 2, subscriptions: [{ topic: deep(1000), qos: 1 }] }),
        ],
        [
          'UNSUBSCRIBE 1000 levels',
          (c) => c.send({ cmd: 'unsubscribe', messageId: 3, unsubscriptions: [deep(1000)] }),
        ],
        [
          '1 MB PUBLISH on its own req topic',
          (c) => c.send({ ...hello(), qos: 1, messageId: 4, payload: Buffer.alloc(1024 * 1024, 0x7b) }),
        ],
      ];
      for (const [what, abuse] of abuses) {
        const raw = await rawDevice(broker.port, 'tv-raw', { key: KEY });
        abuse(raw);
        await raw.waitForClose().catch(() => {
          throw new Error(`${what}: the socket stayed open`);
        });
        expect(
          raw.packets.map((p) => p.cmd),
          what,
        ).toEqual(['connack']);
      }
      expect(
        await metrics.value('devicegate_mqtt_dropped_connections_total', { reason: 'packet_too_large' }),
      ).toBe(tooLarge + 1);
      expect(calls.some((c) => c.payload.length >= 1024 * 1024)).toBe(false);
      expect(calls.filter((c) => c.deviceId === 'tv-raw')).toEqual([]);

      // the broker is up and the bystander, connected all along, still gets its replies
      expect(bystander.closed).toBe(false);
      const reply = await bystander.ask('status', { rid: 'r-still-here' });
      expect(reply.json).toEqual(fixedPendingReply('r-still-here'));
      expect(broker.status().connected).toBe(true);
    });
  });

  it('survives a handler that throws or rejects (it is contracted not to)', async () => {
    const d = await connectDevice({ url, deviceId: 'tv-buggy', key: KEY });
    await d.request('throw-sync', { rid: 'r-throw' });
    await d.request('reject', { rid: 'r-reject' });
    const reply = await d.ask('authorize', { rid: 'r-after-bugs' });
    expect(reply.json?.['rid']).toBe('r-after-bugs');
    expect(callsWithRid('r-throw')).toHaveLength(1);
    expect(callsWithRid('r-reject')).toHaveLength(1);
    expect(logLines.filter((l) => l.includes('device request handler failed'))).toHaveLength(2);
  });

  it('rejects a reply for a device id outside the contract pattern', async () => {
    await expect(broker.publish('+', fixedPendingReply('r-x'))).rejects.toThrow(/invalid device id/);
    await expect(broker.publish('a/b', fixedPendingReply('r-x'))).rejects.toThrow(/invalid device id/);
  });

  it('fails to start on a port in use, with UnavailableError', async () => {
    const clash = new EmbeddedBroker({
      host: '127.0.0.1',
      port: broker.port,
      topics: topics(PREFIX),
      deviceAuth: 'hmac',
      deviceKey: KEY,
      log: capturingLogger([], 'silent'),
      metrics: new Metrics(),
    });
    await expect(clash.start(handler)).rejects.toBeInstanceOf(UnavailableError);
    expect(clash.status().connected).toBe(false);
  });

  it('logs refusals with the device id and reason, and never a password', async () => {
    const secret = devicePassword(KEY, 'tv-logged');
    await connectDevice({ url, deviceId: 'tv-logged', key: KEY });
    await connectRefused({ url, deviceId: 'tv-logged', password: `${secret.slice(0, -1)}x` });
    const refusal = logLines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => l['msg'] === 'device connection refused' && l['deviceId'] === 'tv-logged');
    expect(refusal).toMatchObject({ reason: 'bad_password', remoteAddress: '127.0.0.1' });
    const all = logLines.join('\n');
    expect(all).not.toContain(secret);
    expect(all).not.toContain(secret.slice(0, -1));
    expect(all).not.toContain('not-the-hmac');
  });
});

describe('EmbeddedBroker, deviceAuth none', () => {
  let broker: EmbeddedBroker;
  let url: string;
  const calls: IncomingRequest[] = [];

  beforeAll(async () => {
    broker = new EmbeddedBroker({
      host: '127.0.0.1',
      port: 0,
      topics: topics('demo/prefix/v9'),
      deviceAuth: 'none',
      deviceKey: KEY,
      log: capturingLogger([], 'silent'),
      metrics: new Metrics(),
    });
    await broker.start(async (req) => {
      calls.push(req);
      await broker.publish(req.deviceId, fixedPendingReply(ridOf(req.payload)));
    });
    url = `mqtt://127.0.0.1:${broker.port}`;
  });
  afterAll(async () => {
    await broker?.close();
  });

  it('accepts any valid id with any or no password, under its own prefix', async () => {
    const d = await connectDevice({ url, deviceId: 'demo-tv', password: null, prefix: 'demo/prefix/v9' });
    expect((await d.ask('authorize', { rid: 'r-demo' })).topic).toBe('demo/prefix/v9/demo-tv/res');
    expect(calls[0]).toMatchObject({ deviceId: 'demo-tv', action: 'authorize' });
    await connectDevice({ url, deviceId: 'demo-tv-2', password: 'whatever', prefix: 'demo/prefix/v9' });
  });

  it('still requires client id = username and a valid id', async () => {
    expect((await connectRefused({ url, deviceId: 'demo-tv', clientId: 'someone-else' })).code).toBe(5);
    expect((await connectRefused({ url, deviceId: '#' })).code).toBe(4);
    expect((await connectRefused({ url, deviceId: 'demo-tv', username: null })).code).toBe(4);
  });

  it('still confines publishes and subscriptions to the device own topics', async () => {
    const d = await connectDevice({ url, deviceId: 'demo-a', prefix: 'demo/prefix/v9' });
    expect(await d.subscribe('demo/prefix/v9/demo-b/res')).toEqual([128]);
    d.client.publish('demo/prefix/v9/demo-b/req/authorize', '{"rid":"r-x"}', { qos: 1 });
    await d.waitForClose();
  });
});

describe('EmbeddedBroker.close()', () => {
  it('stops accepting connections, waits for the handler in flight (whose reply still arrives), then closes', async () => {
    const order: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const broker = new EmbeddedBroker({
      host: '127.0.0.1',
      port: 0,
      topics: topics(PREFIX),
      deviceAuth: 'hmac',
      deviceKey: KEY,
      log: capturingLogger([], 'silent'),
      metrics: new Metrics(),
    });
    await broker.start(async (req) => {
      order.push('handler started');
      await gate;
      await broker.publish(req.deviceId, fixedPendingReply(ridOf(req.payload)));
      order.push('handler done');
    });
    const url = `mqtt://127.0.0.1:${broker.port}`;
    try {
      const d = await connectDevice({ url, deviceId: 'tv-slow', key: KEY });
      await d.request('authorize', { rid: 'r-slow' });
      await waitFor(() => order.includes('handler started'), 5000, 'the handler to start');

      const closing = broker.close().then(() => order.push('closed'));
      expect(broker.status().connected).toBe(false);
      await expect(connectDevice({ url, deviceId: 'tv-late', key: KEY })).rejects.toThrow();
      // requests that arrive while closing are not taken
      await d.request('status', { rid: 'r-too-late' }).catch(() => {});
      expect(order).toEqual(['handler started']);

      release();
      await closing;
      expect(order).toEqual(['handler started', 'handler done', 'closed']);
      expect((await d.waitForReply({ rid: 'r-slow' })).json).toEqual(fixedPendingReply('r-slow'));
      await d.waitForClose();
      await expect(broker.publish('tv-slow', fixedPendingReply('r-after'))).rejects.toBeInstanceOf(
        UnavailableError,
      );
      await broker.close(); // idempotent
    } finally {
      release();
      await broker.close();
    }
  });
});

describe('EmbeddedBroker request bound', () => {
  it(`runs at most ${MAX_IN_FLIGHT} handlers at once; a flooding device waits for slots, then every request is handled`, async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let running = 0;
    let peak = 0;
    const handled: string[] = [];
    const broker = new EmbeddedBroker({
      host: '127.0.0.1',
      port: 0,
      topics: topics(PREFIX),
      deviceAuth: 'hmac',
      deviceKey: KEY,
      log: capturingLogger([], 'silent'),
      metrics: new Metrics(),
    });
    await broker.start(async (req) => {
      running += 1;
      peak = Math.max(peak, running);
      await gate;
      handled.push(ridOf(req.payload));
      running -= 1;
    });
    try {
      const d = await connectDevice({
        url: `mqtt://127.0.0.1:${broker.port}`,
        deviceId: 'tv-flood',
        key: KEY,
      });
      const total = MAX_IN_FLIGHT + 44;
      for (let i = 0; i < total; i++) {
        d.client.publish(d.reqTopic('status'), JSON.stringify({ rid: `r-flood-${i}` }), { qos: 1 });
      }
      await waitFor(() => running === MAX_IN_FLIGHT, 5000, 'every handler slot to be taken');
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(running).toBe(MAX_IN_FLIGHT);
      release();
      await waitFor(() => handled.length === total, 5000, 'every request to be handled');
      expect(peak).toBe(MAX_IN_FLIGHT);
      expect(new Set(handled).size).toBe(total);
    } finally {
      release();
      await broker.close();
    }
  });
});
