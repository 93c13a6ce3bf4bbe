/**
 * Scale-out: three gateway processes on one private redis-server and one private Mosquitto (the shipped
 * deploy/mosquitto config, ACL and password recipe), relay mode against the demo IdP with the device flow. 200
 * devices, each with its own credential, ask at once; a person approves every code (10 at a time). Every device
 * must get exactly one `pending` and exactly one `authorized`, the upstream must redeem each device_code exactly
 * once, and the token must still be valid afterwards (a second redemption attempt would have revoked it).
 *
 * The test also reports, from the IdP's side, the upstream token requests against the least the flows needed and
 * any poll of a flow closer to the previous one than the interval.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { closeAllDevices, connectDevice, type TestDevice } from '../helpers/device.ts';
import { type GatewayProcess, startGatewayProcess, stopAllGateways } from '../helpers/gateway-process.ts';
import { approveDeviceCode } from '../helpers/idp-person.ts';
import { type ManagedProcess, startRedis, stopAll, waitFor } from '../helpers/procs.ts';
import { type Broker, type Upstream, instanceEnv, startBroker, startUpstream, userinfo } from './cluster.ts';

const KEY = 'scale-out-test-fleet-key-0123';
const SECRET = 'scale-out-test-secret-0123456789abcdef';
const DEVICES = 200;
const INSTANCES = 3;
const APPROVERS = 10;
const INTERVAL_MS = 1000;
const ids = Array.from({ length: DEVICES }, (_, i) => `tv-${String(i).padStart(3, '0')}`);
const gatewayUsers = Array.from({ length: INSTANCES }, (_, i) => `devicegate-${i + 1}`);

let redisServer: ManagedProcess;
let redis: Redis;
let broker: Broker;
let upstream: Upstream;
let gateways: GatewayProcess[] = [];

/** Runs `fn` over `items`, at most `limit` at a time. */
async function pool<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: limit }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

beforeAll(async () => {
  redisServer = await startRedis();
  redis = new Redis(redisServer.url);
  [broker, upstream] = await Promise.all([
    startBroker({ key: KEY, devices: [], fleet: ids, gateways: gatewayUsers }),
    startUpstream(),
  ]);
  gateways = await Promise.all(
    gatewayUsers.map((username) =>
      startGatewayProcess({
        name: username,
        env: instanceEnv({ broker, upstream, redisUrl: redisServer.url, key: KEY, secret: SECRET, username }),
      }),
    ),
  );
}, 120_000);

afterAll(async () => {
  await closeAllDevices();
  await stopAllGateways();
  redis?.disconnect();
  await upstream?.close();
  await stopAll();
});

describe(`${INSTANCES} gateway instances, one Redis, one Mosquitto`, () => {
  it(`${DEVICES} devices at once: one pending and one authorized each, one redemption per flow`, async () => {
    const devices: TestDevice[] = await Promise.all(
      ids.map((id) => connectDevice({ url: broker.url, deviceId: id, key: KEY, connectTimeoutMs: 15_000 })),
    );

    // every device asks at once
    await Promise.all(devices.map((d) => d.request('authorize', { rid: 'r1', scope: 'openid' })));
    const pendingAt = new Map<string, number>();
    const pendings = await Promise.all(
      devices.map(async (d) => {
        const p = await d.waitForReply({ rid: 'r1', status: 'pending' }, { timeoutMs: 30_000 });
        pendingAt.set(d.id, Date.now());
        return p;
      }),
    );

    // a person approves every code, ten at a time
    const approvedAt = new Map<string, number>();
    await pool(
      devices.map((d, i) => ({ d, p: pendings[i]!.json! })),
      APPROVERS,
      async ({ d, p }) => {
        await approveDeviceCode(
          String(p.verification_uri_complete ?? p.verification_uri),
          String(p.user_code),
        );
        approvedAt.set(d.id, Date.now());
      },
    );
    const authorized = await Promise.all(
      devices.map((d) => d.waitForReply({ rid: 'r1', status: 'authorized' }, { timeoutMs: 60_000 })),
    );

    // Settle: nothing is scheduled any more and no lease is held, so no instance can push again; then the last
    // publishes in flight have a moment to arrive.
    await waitFor(async () => (await redis.zcard('devicegate:sched')) === 0, 20_000, 'an empty schedule');
    await waitFor(
      async () => {
        const tokens = await redis.pipeline(ids.map((id) => ['hget', `devicegate:f:{${id}}:r1`, 't'])).exec();
        return tokens?.every(([, t]) => t === null);
      },
      10_000,
      'no lease held',
    );
    await new Promise((r) => setTimeout(r, 300));

    // exactly one pending and one authorized per device, nothing else
    for (const d of devices) {
      const statuses = d.received.map((r) => `${String(r.json?.['rid'])}:${String(r.json?.['status'])}`);
      expect(statuses, d.id).toEqual(['r1:pending', 'r1:authorized']);
      expect(d.received.every((r) => !r.retain)).toBe(true);
    }

    // the upstream redeemed each device_code once, never tried one twice, and every token still works
    const byCode = new Map<string, number[]>();
    for (const r of upstream.tokenRequests) {
      if (r.deviceCode === undefined) continue;
      byCode.set(r.deviceCode, [...(byCode.get(r.deviceCode) ?? []), r.arrivedAt]);
    }
    expect(upstream.redemptions()).toBe(DEVICES);
    expect(byCode.size).toBe(DEVICES);
    const outcomes = new Map<string, number>();
    for (const r of upstream.tokenRequests) outcomes.set(r.outcome, (outcomes.get(r.outcome) ?? 0) + 1);
    expect(outcomes.get('token')).toBe(DEVICES);
    expect([...outcomes.keys()].sort()).toEqual(['authorization_pending', 'token']);
    const statuses = await Promise.all(
      authorized.map((a) => userinfo(upstream.idp, String(a.json!['access_token']))),
    );
    expect(statuses.filter((s) => s !== 200)).toEqual([]);

    // polls against the least needed, and polls closer than the interval (from the IdP's arrival times)
    let minimum = 0; // Σ ceil(t / interval) + 1, t = the flow's time from pending to approved
    let exact = 0; // Σ floor(t / interval) + 1: polls at t0 + k·interval, the first one after the approval redeems
    let duplicates = 0;
    let closest = Infinity;
    // the provider stores user codes without the mask's dash
    const plain = (code: string) => code.toUpperCase().replace(/[^A-Z0-9]/g, '');
    const codeOf = new Map(
      [...upstream.userCodes].map(([deviceCode, userCode]) => [plain(userCode), deviceCode]),
    );
    for (const [i, d] of devices.entries()) {
      const deviceCode = codeOf.get(plain(String(pendings[i]!.json!['user_code'])));
      expect(deviceCode, d.id).toBeDefined();
      const t = approvedAt.get(d.id)! - pendingAt.get(d.id)!;
      minimum += Math.ceil(t / INTERVAL_MS) + 1;
      exact += Math.floor(t / INTERVAL_MS) + 1;
      const times = (byCode.get(deviceCode!) ?? []).sort((a, b) => a - b);
      for (let k = 1; k < times.length; k++) {
        const gap = times[k]! - times[k - 1]!;
        closest = Math.min(closest, gap);
        if (gap < INTERVAL_MS) duplicates++;
      }
    }
    const perInstance = await Promise.all(
      gateways.map(async (g) => {
        const m = /^devicegate_upstream_polls_total\{[^}]*\} (\d+)$/gm;
        let sum = 0;
        for (const match of (await g.metrics()).matchAll(m)) sum += Number(match[1]);
        return `${g.name}=${sum}`;
      }),
    );
    console.log(
      `[scale-out] ${DEVICES} flows, ${INSTANCES} instances: ${upstream.tokenRequests.length} token requests ` +
        `(Σ ceil(approval time / interval) + 1 = ${minimum}; Σ floor(approval time / interval) + 1 = ${exact}), ` +
        `polls closer than the interval: ` +
        `${duplicates} (closest gap ${closest} ms), polls per instance: ${perInstance.join(' ')}`,
    );
    expect(duplicates).toBe(0);
    // every instance took part
    for (const p of perInstance) expect(Number(p.split('=')[1])).toBeGreaterThan(0);
  }, 180_000);
});
