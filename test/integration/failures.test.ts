/**
 * Nothing is lost when an instance, the broker or Redis fails. Real processes only: gateway instances as child
 * processes (killed with SIGKILL, paused with SIGSTOP, stopped with SIGTERM), one private Mosquitto with the shipped
 * config and ACL, one private redis-server with AOF, and the demo IdP as the relay-mode upstream.
 *
 * A gateway holds a flow's lease only while it visits the flow (mostly: while its poll is at the upstream). To act
 * on the holder at a known point, the test holds the next token request at the IdP: its sender then holds the
 * lease, the lease token in Redis (`{pid}.{random}`, hash field `t`) names it, and a request whose sender died while
 * held is dropped without being processed (so the device_code is never redeemed by a dead instance).
 *
 * Takeover times are measured and printed, never asserted (no timing assertions: CI machines are shared).
 */
import { Redis } from 'ioredis';
import mqtt from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { devicePassword } from '../../src/core/crypto.ts';
import { closeAllDevices, connectDevice, type Received, type TestDevice } from '../helpers/device.ts';
import { type GatewayProcess, startGatewayProcess, stopAllGateways } from '../helpers/gateway-process.ts';
import { approveDeviceCode } from '../helpers/idp-person.ts';
import { type ManagedProcess, startRedis, stopAll, waitFor } from '../helpers/procs.ts';
import {
  type Broker,
  PREFIX,
  type Upstream,
  flowKey,
  instanceEnv,
  leasePid,
  startBroker,
  startRedisProxy,
  startUpstream,
  userinfo,
} from './cluster.ts';

const KEY = 'failures-test-fleet-key-012345';
const SECRET = 'failures-test-secret-0123456789abcdef';
const LEASE_MS = 3000;
const USERS = ['devicegate-1', 'devicegate-2', 'devicegate-3', 'devicegate-4'];
const DEVICES = [
  'tv-kill-pending',
  'tv-kill-approved',
  'tv-stop',
  'tv-broker',
  'tv-redis',
  'tv-term',
  'tv-slow',
  'tv-paused',
  ...Array.from({ length: 8 }, (_, i) => `tv-after-kill-${i}`),
  'tv-broker-resend',
];

let redisServer: ManagedProcess;
let redis: Redis;
let broker: Broker;
let upstream: Upstream;
const instances: GatewayProcess[] = [];
const measured: string[] = [];

function alive(): GatewayProcess[] {
  return instances.filter((g) => !g.exited);
}

/**
 * Starts instances until `n` are alive, each with a broker username no live instance uses (and, with `redisUrl`, a
 * Redis URL of its own).
 */
async function ensureInstances(n: number, redisUrl?: (i: number) => string): Promise<GatewayProcess[]> {
  const starting: Array<Promise<GatewayProcess>> = [];
  const taken = new Set(alive().map((g) => g.name));
  for (const username of USERS) {
    if (alive().length + starting.length >= n) break;
    if (taken.has(username)) continue;
    starting.push(
      startGatewayProcess({
        name: username,
        timeoutMs: 60_000, // tsx compiles the sources first: slow on a loaded machine
        env: instanceEnv({
          broker,
          upstream,
          redisUrl: redisUrl?.(starting.length) ?? redisServer.url,
          key: KEY,
          secret: SECRET,
          username,
          leaseMs: LEASE_MS,
        }),
      }),
    );
  }
  instances.push(...(await Promise.all(starting)));
  return alive();
}

/** The instance whose pid is in the flow's lease token right now. */
async function holderOf(deviceId: string, rid: string): Promise<GatewayProcess | undefined> {
  const pid = leasePid(await redis.hget(flowKey(deviceId, rid), 't'));
  return instances.find((g) => g.pid === pid);
}

function device(id: string): Promise<TestDevice> {
  return connectDevice({ url: broker.url, deviceId: id, key: KEY });
}

function authorizedCount(received: readonly Received[], rid: string): number {
  return received.filter((r) => r.json?.['rid'] === rid && r.json?.['status'] === 'authorized').length;
}

/** Upstream polls an instance has counted (its /metrics), whatever their outcome. */
async function pollsOf(g: GatewayProcess): Promise<number> {
  let sum = 0;
  for (const m of (await g.metrics()).matchAll(/^devicegate_upstream_polls_total\{[^}]*\} (\d+)$/gm)) {
    sum += Number(m[1]);
  }
  return sum;
}

/** Redemptions so far, to compare before and after a scenario. */
function redeemed(): number {
  return upstream.redemptions();
}

/**
 * After a kill -9 of the lease holder: the dead holder's poll was dropped, the device got exactly one token that the
 * upstream accepts, nothing is left scheduled, and the upstream redeemed the device code once.
 */
async function expectTakenOverOnce(o: {
  pollArrivedAt: number;
  reply: Received;
  device: TestDevice;
  redeemedBefore: number;
}): Promise<void> {
  expect(upstream.tokenRequests.find((r) => r.arrivedAt === o.pollArrivedAt)?.outcome).toBe('dropped');
  expect(await userinfo(upstream.idp, String(o.reply.json!['access_token']))).toBe(200);
  await waitFor(async () => (await redis.zcard('devicegate:sched')) === 0, 2 * LEASE_MS, 'nothing scheduled');
  expect(authorizedCount(o.device.received, 'r1')).toBe(1);
  expect(redeemed() - o.redeemedBefore).toBe(1);
}

beforeAll(async () => {
  redisServer = await startRedis({ appendonly: true });
  redis = new Redis(redisServer.url, { maxRetriesPerRequest: 1 });
  redis.on('error', () => {}); // the Redis scenario stops the server; this client reconnects by itself
  [broker, upstream] = await Promise.all([
    startBroker({ key: KEY, devices: DEVICES, gateways: USERS, verboseLog: true }),
    startUpstream(),
  ]);
  await ensureInstances(2);
}, 120_000);

afterEach(closeAllDevices);

afterAll(async () => {
  if (measured.length > 0) console.log(`[failures]\n  ${measured.join('\n  ')}`);
  await stopAllGateways();
  redis?.disconnect();
  await upstream?.close();
  await stopAll();
});

describe('kill -9 of the instance holding a flow', () => {
  it('while the flow is pending: another instance completes it, the token is pushed once and redeemed once', async () => {
    await ensureInstances(2);
    const before = redeemed();
    const held = upstream.holdNext();
    const tv = await device('tv-kill-pending');
    const p = (await tv.ask('authorize', { rid: 'r1' }, { status: 'pending' })).json!;
    const poll = await held;
    const holder = await holderOf('tv-kill-pending', 'r1');
    expect(holder, 'a live instance holds the lease while its poll is at the IdP').toBeDefined();
    expect(poll.senderConnected).toBe(true);

    holder!.kill('SIGKILL');
    const killedAt = Date.now();
    await holder!.waitExit();
    await waitFor(() => !poll.senderConnected, 5000, 'the dead sender to be seen gone');
    poll.release(); // its sender is gone: dropped, never processed
    await approveDeviceCode(String(p.verification_uri_complete ?? p.verification_uri), String(p.user_code));
    const a = await tv.waitForReply({ rid: 'r1', status: 'authorized' }, { timeoutMs: 4 * LEASE_MS });
    measured.push(`kill -9 while pending: ${Date.now() - killedAt} ms from the kill to the device's token`);

    await expectTakenOverOnce({
      pollArrivedAt: poll.arrivedAt,
      reply: a,
      device: tv,
      redeemedBefore: before,
    });

    // The dead instance is out of the broker's share group at once: every new request is answered (a persistent
    // session would keep it in the group, and Mosquitto would queue its share of requests for it).
    const others = await Promise.all(Array.from({ length: 8 }, (_, i) => device(`tv-after-kill-${i}`)));
    const replies = await Promise.all(
      others.map((d) => d.ask('authorize', { rid: 'k1' }, { status: 'pending' })),
    );
    expect(replies).toHaveLength(8);
    for (const d of others) await d.ask('cancel', { rid: 'k1' }, { status: 'error' });
  });

  it('right after approval, before the push: another instance redeems once and pushes once', async () => {
    await ensureInstances(2);
    const before = redeemed();
    const held = upstream.holdNext();
    const tv = await device('tv-kill-approved');
    const p = (await tv.ask('authorize', { rid: 'r1' }, { status: 'pending' })).json!;
    const poll = await held;
    const holder = await holderOf('tv-kill-approved', 'r1');
    expect(holder).toBeDefined();

    // the person approves while the holder's poll is on its way: that poll would redeem the code
    await approveDeviceCode(String(p.verification_uri_complete ?? p.verification_uri), String(p.user_code));
    holder!.kill('SIGKILL');
    const killedAt = Date.now();
    await holder!.waitExit();
    await waitFor(() => !poll.senderConnected, 5000, 'the dead sender to be seen gone');
    poll.release();
    const a = await tv.waitForReply({ rid: 'r1', status: 'authorized' }, { timeoutMs: 4 * LEASE_MS });
    measured.push(`kill -9 after approval: ${Date.now() - killedAt} ms from the kill to the device's token`);

    await expectTakenOverOnce({
      pollArrivedAt: poll.arrivedAt,
      reply: a,
      device: tv,
      redeemedBefore: before,
    });
  });
});

describe('a poll slower than the lease', () => {
  it('is not repeated by another instance while it runs (the holder renews its lease): one redemption, a valid token', async () => {
    await ensureInstances(2);
    const before = redeemed();
    const held = upstream.holdNext();
    const tv = await device('tv-slow');
    const p = (await tv.ask('authorize', { rid: 'r1' }, { status: 'pending' })).json!;
    const poll = await held;
    const holder = await holderOf('tv-slow', 'r1');
    expect(holder).toBeDefined();
    await approveDeviceCode(String(p.verification_uri_complete ?? p.verification_uri), String(p.user_code));
    // the upstream takes one and a half leases to answer (below the upstream timeout)
    const requestsBefore = upstream.tokenRequests.length;
    await new Promise((r) => setTimeout(r, 1.5 * LEASE_MS));
    expect(upstream.tokenRequests.length, 'no other instance polled meanwhile').toBe(requestsBefore);
    expect(leasePid(await redis.hget(flowKey('tv-slow', 'r1'), 't'))).toBe(holder!.pid);
    poll.release();

    const a = await tv.waitForReply({ rid: 'r1', status: 'authorized' }, { timeoutMs: 4 * LEASE_MS });
    await waitFor(
      async () => (await redis.zcard('devicegate:sched')) === 0,
      2 * LEASE_MS,
      'nothing scheduled',
    );
    expect(authorizedCount(tv.received, 'r1')).toBe(1);
    expect(redeemed() - before).toBe(1);
    expect(upstream.tokenRequests.slice(requestsBefore).map((r) => r.outcome)).toEqual([]);
    expect(await userinfo(upstream.idp, String(a.json!['access_token']))).toBe(200);
  });
});

describe('an instance paused past its lease (SIGSTOP) and resumed (SIGCONT)', () => {
  it('writes nothing with its lost lease (lease_lost) and publishes nothing: the device gets one result', async () => {
    const [, other] = await ensureInstances(2);
    expect(other).toBeDefined();
    const before = redeemed();
    const heldA = upstream.holdNext();
    const tv = await device('tv-stop');
    const p = (await tv.ask('authorize', { rid: 'r1' }, { status: 'pending' })).json!;
    const pollA = await heldA;
    const paused = (await holderOf('tv-stop', 'r1'))!;
    expect(paused).toBeDefined();
    const pollsBefore = await pollsOf(paused);
    paused.kill('SIGSTOP');
    try {
      // its poll is answered "pending" while it is paused; the answer waits in its socket
      pollA.release();
      // past the lease, another instance takes the flow over; hold its poll too, so the flow's version stays put
      const pollB = await upstream.holdNext();
      const taker = await holderOf('tv-stop', 'r1');
      expect(taker).toBeDefined();
      expect(taker!.pid).not.toBe(paused.pid);
      const version = await redis.hget(flowKey('tv-stop', 'r1'), 'v');

      // resumed: it takes in the stale answer of its poll ("pending", or a timeout if its timer fires first) and
      // tries to write it with its old lease token
      paused.kill('SIGCONT');
      await waitFor(
        async () => (await pollsOf(paused)) > pollsBefore,
        5000,
        'the resumed instance to take in its stale answer',
      );
      await new Promise((r) => setTimeout(r, 300));
      expect(await redis.hget(flowKey('tv-stop', 'r1'), 'v')).toBe(version);
      expect(leasePid(await redis.hget(flowKey('tv-stop', 'r1'), 't'))).toBe(taker!.pid);

      await approveDeviceCode(String(p.verification_uri_complete ?? p.verification_uri), String(p.user_code));
      pollB.release();
      const a = await tv.waitForReply({ rid: 'r1', status: 'authorized' }, { timeoutMs: 4 * LEASE_MS });
      await waitFor(
        async () => (await redis.zcard('devicegate:sched')) === 0,
        2 * LEASE_MS,
        'nothing scheduled',
      );
      await new Promise((r) => setTimeout(r, 300));
      expect(tv.received.filter((r) => r.json?.['rid'] === 'r1').map((r) => r.json?.['status'])).toEqual([
        'pending',
        'authorized',
      ]);
      expect(redeemed() - before).toBe(1);
      expect(await userinfo(upstream.idp, String(a.json!['access_token']))).toBe(200);
    } finally {
      paused.kill('SIGCONT');
    }
  });
});

describe('SIGTERM mid-flow', () => {
  it('exits 0, disconnects cleanly, releases its lease, and another instance finishes without waiting for it', async () => {
    await ensureInstances(2);
    const before = redeemed();
    const held = upstream.holdNext();
    const tv = await device('tv-term');
    const p = (await tv.ask('authorize', { rid: 'r1' }, { status: 'pending' })).json!;
    const poll = await held;
    const leaving = (await holderOf('tv-term', 'r1'))!;
    expect(leaving).toBeDefined();
    const logFrom = leaving.logs().length;

    const termAt = Date.now();
    leaving.kill('SIGTERM');
    await leaving.waitForLog((l) => l.msg === 'shutting down', { from: logFrom });
    // its visit in flight finishes (the upstream answers), then it stops
    poll.release();
    const exit = await leaving.waitExit(10_000);
    const exitedAt = Date.now();
    expect(exit).toEqual({ code: 0, signal: null });
    // the lease is gone at once, and the flow is due at its next poll, not after a lease timeout
    expect(await redis.hget(flowKey('tv-term', 'r1'), 't')).toBeNull();
    const due = Number(await redis.zscore('devicegate:sched', 'tv-term/r1'));
    expect(due).toBeLessThanOrEqual(exitedAt + 1000);

    // the broker saw a DISCONNECT (no Will: the gateway never sets one); the log since this instance connected
    const whole = await broker.log();
    const log = whole.slice(whole.lastIndexOf(`as ${leaving.name} (`) - 200);
    expect(log).toContain(`Received DISCONNECT from ${leaving.name}`);
    expect(log).toMatch(
      new RegExp(
        `as ${leaving.name} \\(p\\d, c\\d, k\\d+, u'${leaving.name}'\\)\\.\\n[^\\n]*No will message`,
      ),
    );
    expect(log).not.toContain(`Client ${leaving.name} closed its connection`);

    await approveDeviceCode(String(p.verification_uri_complete ?? p.verification_uri), String(p.user_code));
    const a = await tv.waitForReply({ rid: 'r1', status: 'authorized' }, { timeoutMs: 4 * LEASE_MS });
    measured.push(
      `SIGTERM: exit after ${exitedAt - termAt} ms (code ${exit.code}); the device had its token ${Date.now() - exitedAt} ms after the exit`,
    );
    expect(authorizedCount(tv.received, 'r1')).toBe(1);
    expect(redeemed() - before).toBe(1);
    expect(await userinfo(upstream.idp, String(a.json!['access_token']))).toBe(200);
  });
});

describe('Mosquitto restarts mid-flow', () => {
  it('gateways and devices reconnect; the device gets its result', async () => {
    const gws = await ensureInstances(2);
    // a device as firmware would run it: persistent session, reconnecting by itself
    const received: Array<Record<string, unknown>> = [];
    const client = await mqtt.connectAsync(broker.url, {
      clientId: 'tv-broker',
      username: 'tv-broker',
      password: devicePassword(KEY, 'tv-broker'),
      clean: false,
      reconnectPeriod: 200,
    });
    client.on('message', (_t, payload) =>
      received.push(JSON.parse(payload.toString()) as Record<string, unknown>),
    );
    try {
      await client.subscribeAsync(`${PREFIX}/tv-broker/res`, { qos: 1 });
      await client.publishAsync(`${PREFIX}/tv-broker/req/authorize`, '{"rid":"r1"}', { qos: 1 });
      const p = await waitFor(() => received.find((r) => r['status'] === 'pending'), 5000, 'pending');

      await broker.stop();
      // the person approves while the broker is down: the gateway gets the token but cannot push it
      await approveDeviceCode(
        String(p['verification_uri_complete'] ?? p['verification_uri']),
        String(p['user_code']),
      );
      await waitFor(
        async () => (await redis.hget(flowKey('tv-broker', 'r1'), 's')) === 'authorized',
        10_000,
        'the token',
      );
      await broker.restart();
      const restartedAt = Date.now();
      for (const g of gws)
        await waitFor(async () => (await g.readyz()).status === 200, 15_000, `${g.name} ready`);
      await waitFor(() => client.connected, 10_000, 'the device to reconnect');

      let via = 'push';
      const pushed = await waitFor(
        () => received.find((r) => r['status'] === 'authorized'),
        2 * LEASE_MS,
        'push',
      ).catch(() => undefined);
      let token = pushed?.['access_token'];
      if (pushed === undefined) {
        via = 'req/status';
        await client.publishAsync(`${PREFIX}/tv-broker/req/status`, '{"rid":"r1"}', { qos: 1 });
        token = (
          await waitFor(() => received.find((r) => r['status'] === 'authorized'), 5000, 'status reply')
        )['access_token'];
      }
      measured.push(
        `Mosquitto restart: the device got its token by ${via}, ${Date.now() - restartedAt} ms after the restart`,
      );
      expect(await userinfo(upstream.idp, String(token))).toBe(200);
    } finally {
      await client.endAsync(true);
    }
  });
});

describe('Mosquitto restarts while a device sends a new request', () => {
  it('a request the broker dropped before the gateways resubscribed is answered once the device repeats it (same rid, one flow)', async () => {
    const gws = await ensureInstances(2);
    const received: Array<Record<string, unknown>> = [];
    const client = await mqtt.connectAsync(broker.url, {
      clientId: 'tv-broker-resend',
      username: 'tv-broker-resend',
      password: devicePassword(KEY, 'tv-broker-resend'),
      clean: false,
      reconnectPeriod: 100,
    });
    client.on('message', (_t, payload) =>
      received.push(JSON.parse(payload.toString()) as Record<string, unknown>),
    );
    try {
      await client.subscribeAsync(`${PREFIX}/tv-broker-resend/res`, { qos: 1 });
      await broker.stop();
      await broker.restart();
      // The device is back before the gateways (their reconnect backs off from 0.25-0.5 s): its request reaches a
      // broker where the gateways' shared subscription is gone — Mosquitto restores no $share subscription from
      // persistence (docs/brokers.md) — and is dropped.
      await waitFor(() => client.connected, 10_000, 'the device to reconnect');
      const body = '{"rid":"r1"}';
      await client.publishAsync(`${PREFIX}/tv-broker-resend/req/authorize`, body, { qos: 1 });
      for (const g of gws)
        await waitFor(async () => (await g.readyz()).status === 200, 15_000, `${g.name} ready`);
      // The device contract: a request without an answer is repeated, unchanged, after a few seconds.
      let sent = 1;
      let pending: Record<string, unknown> | undefined;
      while (pending === undefined && sent <= 8) {
        pending = await waitFor(
          () => received.find((r) => r['rid'] === 'r1' && r['status'] === 'pending'),
          2000,
          'a pending answer',
        ).catch(() => undefined);
        if (pending !== undefined) break;
        await client.publishAsync(`${PREFIX}/tv-broker-resend/req/authorize`, body, { qos: 1 });
        sent += 1;
      }
      expect(pending).toBeDefined();
      await new Promise((r) => setTimeout(r, 500));
      // Repeats are idempotent: every answer names the same flow.
      const codes = new Set(received.filter((r) => r['rid'] === 'r1').map((r) => r['user_code']));
      expect(codes).toEqual(new Set([pending!['user_code']]));
      measured.push(`Mosquitto restart: the device sent its new request ${sent} time(s) before the answer`);
      // end the flow, so that its polls do not run on into the later tests
      await client.publishAsync(`${PREFIX}/tv-broker-resend/req/cancel`, JSON.stringify({ rid: 'r1' }), {
        qos: 1,
      });
      await waitFor(
        () => received.find((r) => r['rid'] === 'r1' && r['status'] === 'error'),
        5000,
        'the cancel answered',
      );
    } finally {
      await client.endAsync(true);
    }
  });
});

describe('Redis restarts (AOF)', () => {
  it('answers temporarily_unavailable and /readyz 503 while Redis is down; pending flows survive and complete', async () => {
    const gws = await ensureInstances(2);
    const tv = await device('tv-redis');
    const p = (await tv.ask('authorize', { rid: 'r1' }, { status: 'pending' })).json!;
    // AOF is fsynced every second: let the flow's creation reach the disk
    await new Promise((r) => setTimeout(r, 1200));
    await redisServer.stop();

    const asked = Date.now();
    const down = await tv.ask('authorize', { rid: 'r2' }, { status: 'error', timeoutMs: 5000 });
    measured.push(`Redis down: the device had its error reply after ${Date.now() - asked} ms`);
    expect(down.json).toMatchObject({
      v: 1,
      rid: 'r2',
      status: 'error',
      error: 'temporarily_unavailable',
      retry_after: expect.any(Number),
    });
    for (const g of gws) {
      const r = await waitFor(
        async () => {
          const res = await g.readyz();
          return res.status === 503 ? res : undefined;
        },
        5000,
        `${g.name} /readyz 503`,
      );
      expect(r.body.checks['store']).toMatchObject({ ok: false });
      expect(r.body.checks['broker']).toMatchObject({ ok: true });
    }

    await redisServer.restart();
    for (const g of gws)
      await waitFor(async () => (await g.readyz()).status === 200, 10_000, `${g.name} ready`);
    expect(await redis.hget(flowKey('tv-redis', 'r1'), 's')).toBe('pending');
    await approveDeviceCode(String(p.verification_uri_complete ?? p.verification_uri), String(p.user_code));
    const a = await tv.waitForReply({ rid: 'r1', status: 'authorized' }, { timeoutMs: 4 * LEASE_MS });
    expect(await userinfo(upstream.idp, String(a.json!['access_token']))).toBe(200);
    expect(authorizedCount(tv.received, 'r1')).toBe(1);
    // the outage is in the JSON log, once, and nothing went around it to stderr
    for (const g of gws) {
      expect(g.stderr(), g.name).toBe('');
      expect(g.logs().filter((l) => l.msg === 'redis connection failed; reconnecting').length, g.name).toBe(
        1,
      );
      expect(
        g.logs().some((l) => l.msg === 'redis connection restored'),
        g.name,
      ).toBe(true);
    }
  });
});

describe('an instance paused after taking a lease and reading the flow, before its poll', () => {
  it('does not send the stale poll when it resumes: the token another instance got stays valid', async () => {
    // two instances whose Redis traffic goes through proxies, so one can be caught between reading and polling
    await Promise.all(alive().map((g) => g.stop()));
    const proxies = await Promise.all([0, 1].map(() => startRedisProxy(redisServer.port)));
    try {
      const gws = await ensureInstances(2, (i) => proxies[i]!.url);
      const key = flowKey('tv-paused', 'r1');
      let paused: GatewayProcess | undefined;
      const caught = Promise.race(
        proxies.map((proxy, i) =>
          proxy.pauseBeforeFlowRead(key, () => {
            paused = gws[i]!;
            paused.kill('SIGSTOP');
          }),
        ),
      );
      const tv = await device('tv-paused');
      const p = (await tv.ask('authorize', { rid: 'r1' }, { status: 'pending' })).json!;
      await caught;
      for (const proxy of proxies) proxy.disarm();
      try {
        expect(leasePid(await redis.hget(key, 't'))).toBe(paused!.pid);
        // while it is paused with the pending flow in its socket, the person approves and another instance, past
        // the lease, redeems the code and pushes the token
        await approveDeviceCode(
          String(p.verification_uri_complete ?? p.verification_uri),
          String(p.user_code),
        );
        const a = await tv.waitForReply({ rid: 'r1', status: 'authorized' }, { timeoutMs: 4 * LEASE_MS });
        await waitFor(
          // this flow's entry (`<deviceId>/<rid>`): earlier tests may leave flows of their own pending
          async () => (await redis.zscore('devicegate:sched', 'tv-paused/r1')) === null,
          2 * LEASE_MS,
          'the flow unscheduled',
        );
        const requestsBefore = upstream.tokenRequests.length;

        // resumed, it takes in the stale "pending" read; polling now would replay a redeemed device_code, and the
        // upstream would revoke the token the device already has
        paused!.kill('SIGCONT');
        await waitFor(
          async () => (await fetch(`${paused!.httpUrl}/healthz`)).ok,
          5000,
          'the instance to resume',
        );
        await new Promise((r) => setTimeout(r, 1000));
        expect(upstream.tokenRequests.slice(requestsBefore)).toEqual([]);
        expect(await userinfo(upstream.idp, String(a.json!['access_token']))).toBe(200);
        expect(authorizedCount(tv.received, 'r1')).toBe(1);
      } finally {
        paused?.kill('SIGCONT');
      }
    } finally {
      await Promise.all(alive().map((g) => g.stop()));
      await Promise.all(proxies.map((proxy) => proxy.close()));
    }
  });
});
