/** Starting flows (src/service/start-relay.ts, start-bridge.ts) against the in-memory store on a fake clock. */
import { describe, expect, it } from 'vitest';
import { normalizeUserCode } from '../../src/core/codes.ts';
import { deriveKeys } from '../../src/core/crypto.ts';
import { OAuthError } from '../../src/core/errors.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import { BridgeStarter, MAX_CODE_ATTEMPTS, userCodeHash } from '../../src/service/start-bridge.ts';
import { RelayStarter } from '../../src/service/start-relay.ts';
import { flowCodec } from '../../src/store/codec.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import type { FlowStore } from '../../src/store/types.ts';
import type { DeviceAuthorization, RelayUpstream } from '../../src/upstream/types.ts';
import { FakeClock } from '../helpers/clock.ts';

const keys = deriveKeys('s'.repeat(32));
const LIMITS = { maxFlowsPerDevice: 2, leaseMs: 10_000 };
const REQUEST = {
  deviceId: 'tv-1',
  rid: 'r1',
  scope: 'openid',
  device: { name: 'TV' },
  network: '192.0.2.1',
};

function memory() {
  const clock = new FakeClock();
  return { clock, store: new MemoryStore({ codec: flowCodec(keys), clock }) };
}

/** An upstream device authorization endpoint that answers with fixed codes and counts its calls. */
function relayUpstream(answer: Partial<DeviceAuthorization> = {}) {
  const calls: string[] = [];
  const upstream: RelayUpstream = {
    kind: 'device',
    startDeviceAuthorization: async (scope) => {
      calls.push(scope);
      return {
        deviceCode: `dc-${calls.length}`,
        userCode: 'WDJB-MJHT',
        verificationUri: 'https://idp.example/device',
        verificationUriComplete: 'https://idp.example/device?user_code=WDJB-MJHT',
        expiresIn: 1800,
        interval: 5,
        ...answer,
      };
    },
    pollDeviceToken: async () => ({ kind: 'authorization_pending' }),
    refresh: async () => ({ access_token: 'at', token_type: 'Bearer' }),
    revoke: async () => false,
  };
  return { upstream, calls };
}

describe('relay starter', () => {
  it('creates the flow from the upstream’s answer, lifetime capped, first poll scheduled', async () => {
    const { clock, store } = memory();
    const { upstream, calls } = relayUpstream();
    const starter = new RelayStarter({ store, upstream, clock, codeTtlSeconds: 600, ...LIMITS });
    const r = await starter.start(REQUEST);
    const now = clock.now();
    expect(calls).toEqual(['openid']);
    expect(r).toEqual({
      status: 'created',
      flow: {
        deviceId: 'tv-1',
        rid: 'r1',
        mode: 'device',
        state: 'pending',
        scope: 'openid',
        createdAt: now,
        expiresAt: now + 600_000,
        interval: 5,
        nextPollAt: now + 5000,
        verificationUri: 'https://idp.example/device',
        device: { name: 'TV' },
        network: '192.0.2.1',
        secrets: {
          userCode: 'WDJB-MJHT',
          deviceCode: 'dc-1',
          verificationUriComplete: 'https://idp.example/device?user_code=WDJB-MJHT',
        },
      },
    });
    expect((await store.get('tv-1', 'r1'))?.flow).toEqual(r.status === 'created' ? r.flow : undefined);
    expect(await store.nextDue()).toBe(now + 5000);
  });

  it('answers a repeated rid with the stored flow and no upstream call', async () => {
    const { clock, store } = memory();
    const { upstream, calls } = relayUpstream();
    const starter = new RelayStarter({ store, upstream, clock, codeTtlSeconds: 600, ...LIMITS });
    await starter.start(REQUEST);
    const again = await starter.start(REQUEST);
    expect(calls.length).toBe(1);
    expect(again).toMatchObject({ status: 'exists', known: { version: 1, flow: { rid: 'r1' } } });
  });

  it('refuses more unfinished flows than allowed with slow_down', async () => {
    const { clock, store } = memory();
    const starter = new RelayStarter({
      store,
      upstream: relayUpstream().upstream,
      clock,
      codeTtlSeconds: 600,
      ...LIMITS,
    });
    await starter.start({ ...REQUEST, rid: 'a' });
    await starter.start({ ...REQUEST, rid: 'b' });
    await expect(starter.start({ ...REQUEST, rid: 'c' })).rejects.toMatchObject({
      code: 'slow_down',
      retryAfter: 5,
    });
  });

  it('checks the cap before the upstream: 30 concurrent starts of one device make at most the cap of upstream calls', async () => {
    const { clock, store } = memory();
    const { upstream, calls } = relayUpstream();
    const starter = new RelayStarter({ store, upstream, clock, codeTtlSeconds: 600, ...LIMITS });
    const results = await Promise.allSettled(
      Array.from({ length: 30 }, (_, i) => starter.start({ ...REQUEST, rid: `c${i}` })),
    );
    expect(calls.length).toBe(LIMITS.maxFlowsPerDevice);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(LIMITS.maxFlowsPerDevice);
    for (const r of results) {
      if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: 'slow_down' });
    }
    // another device is not affected, and a finished start frees its reservation
    expect((await starter.start({ ...REQUEST, deviceId: 'tv-2' })).status).toBe('created');
    expect(calls.length).toBe(LIMITS.maxFlowsPerDevice + 1);
  });

  it('a device at its cap in the store is refused without an upstream call', async () => {
    const { clock, store } = memory();
    const { upstream, calls } = relayUpstream();
    const starter = new RelayStarter({ store, upstream, clock, codeTtlSeconds: 600, ...LIMITS });
    await starter.start({ ...REQUEST, rid: 'a' });
    await starter.start({ ...REQUEST, rid: 'b' });
    await expect(starter.start({ ...REQUEST, rid: 'c' })).rejects.toMatchObject({ code: 'slow_down' });
    expect(calls.length).toBe(2);
  });
});

function bridgeStarter(store: FlowStore, clock: FakeClock, metrics = new Metrics(), userCodeLength = 8) {
  return new BridgeStarter({
    store,
    keys,
    clock,
    metrics,
    codeTtlSeconds: 900,
    userCodeLength,
    pollIntervalSeconds: 5,
    ...LIMITS,
  });
}

/** The memory store, except that the first `taken` creates find their user code held by another flow. */
function collidingStore(inner: MemoryStore, taken: number): FlowStore {
  let left = taken;
  return new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === 'create') {
        return async (...args: Parameters<FlowStore['create']>) => {
          if (left-- > 0) return { status: 'code_taken' } as const;
          return target.create(...args);
        };
      }
      const value: unknown = Reflect.get(target, prop, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

describe('bridge starter', () => {
  it('draws a user code and creates the flow with the code reserved', async () => {
    const { clock, store } = memory();
    const r = await bridgeStarter(store, clock).start(REQUEST);
    if (r.status !== 'created' || r.flow.mode !== 'authorization_code') throw new Error('not created');
    const now = clock.now();
    expect(r.flow).toMatchObject({ state: 'pending', createdAt: now, expiresAt: now + 900_000, interval: 5 });
    expect(r.flow.secrets.userCode).toMatch(/^[A-Z]{4}-[A-Z]{4}$/);
    const hash = userCodeHash(keys, normalizeUserCode(r.flow.secrets.userCode)!);
    expect(await store.findUserCode(hash)).toEqual({ deviceId: 'tv-1', rid: 'r1' });
    expect(await store.nextDue()).toBe(now + 900_001);
  });

  it('draws codes of the configured length (DEVICEGATE_USER_CODE_LENGTH), reserved under their canonical form', async () => {
    const { clock, store } = memory();
    const r = await bridgeStarter(store, clock, new Metrics(), 10).start(REQUEST);
    if (r.status !== 'created' || r.flow.mode !== 'authorization_code') throw new Error('not created');
    expect(r.flow.secrets.userCode).toMatch(/^[A-Z]{4}-[A-Z]{4}-[A-Z]{2}$/);
    const hash = userCodeHash(keys, normalizeUserCode(r.flow.secrets.userCode)!);
    expect(await store.findUserCode(hash)).toEqual({ deviceId: 'tv-1', rid: 'r1' });
  });

  it('answers a repeated rid with the stored flow', async () => {
    const { clock, store } = memory();
    const starter = bridgeStarter(store, clock);
    const first = await starter.start(REQUEST);
    const again = await starter.start(REQUEST);
    expect(again).toEqual({
      status: 'exists',
      known: { flow: first.status === 'created' && first.flow, version: 1 },
    });
  });

  it('draws again when a code is taken, counting each collision', async () => {
    const { clock, store } = memory();
    const metrics = new Metrics();
    const r = await bridgeStarter(collidingStore(store, 3), clock, metrics).start(REQUEST);
    expect(r.status).toBe('created');
    expect(await metrics.value('devicegate_user_code_collisions_total')).toBe(3);
  });

  it(`gives up with temporarily_unavailable after ${MAX_CODE_ATTEMPTS} taken codes`, async () => {
    const { clock, store } = memory();
    const metrics = new Metrics();
    const starter = bridgeStarter(collidingStore(store, MAX_CODE_ATTEMPTS), clock, metrics);
    const err: unknown = await starter.start(REQUEST).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OAuthError);
    expect(err).toMatchObject({ code: 'temporarily_unavailable', retryAfter: 5 });
    expect(await metrics.value('devicegate_user_code_collisions_total')).toBe(MAX_CODE_ATTEMPTS);
    expect(await store.get('tv-1', 'r1')).toBeUndefined();
  });
});
