/** Read → apply → compare-and-set (src/service/updater.ts) against the in-memory store on a fake clock. */
import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { deriveKeys } from '../../src/core/crypto.ts';
import { scanProof } from '../../src/core/scan-link.ts';
import type { BridgeFlow, PublicJwk } from '../../src/core/flow.ts';
import type { DeviceReply } from '../../src/core/protocol.ts';
import { createLogger } from '../../src/observability/log.ts';
import { capturingLogger } from '../helpers/log.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import { GrantStore } from '../../src/service/grants.ts';
import { Replies } from '../../src/service/replies.ts';
import { FlowUpdater } from '../../src/service/updater.ts';
import { flowCodec } from '../../src/store/codec.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import type { FlowStore } from '../../src/store/types.ts';
import type { RefreshingUpstream } from '../../src/upstream/types.ts';
import { FakeClock } from '../helpers/clock.ts';

/** A 1024-bit RSA key, as an older gateway accepted it (src/core/device-key.ts refuses it now). */
const WEAK_KEY = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({
  format: 'jwk',
}) as PublicJwk;

const keys = deriveKeys('u'.repeat(32));
const LEASE_MS = 10_000;
const silent = createLogger('silent');

/** `inner`, except that `update` runs `before(attempt)` first (to let a competitor write in between). */
function interfering(inner: MemoryStore, before: (attempt: number) => Promise<void>): FlowStore {
  let attempt = 0;
  return new Proxy(inner, {
    get(target, prop, receiver) {
      if (prop === 'update') {
        return async (...args: Parameters<FlowStore['update']>) => {
          await before(++attempt);
          return target.update(...args);
        };
      }
      const value: unknown = Reflect.get(target, prop, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

async function setup(interfere?: (inner: MemoryStore) => (attempt: number) => Promise<void>, log = silent) {
  const clock = new FakeClock();
  const inner = new MemoryStore({ codec: flowCodec(keys), clock });
  const store = interfere === undefined ? inner : interfering(inner, interfere(inner));
  const metrics = new Metrics();
  const sent: Array<{ deviceId: string; reply: DeviceReply }> = [];
  const replies = new Replies({
    keys,
    channel: { publish: async (deviceId, reply) => void sent.push({ deviceId, reply }) },
    publicUrl: 'https://gw.example',
    metrics,
    log,
  });
  const upstream: RefreshingUpstream = {
    refresh: async () => {
      throw new Error('not used');
    },
    revoke: async () => true,
  };
  const grants = new GrantStore({ store, keys, ttlSeconds: 3600, upstream, log });
  const updater = new FlowUpdater({ store, clock, leaseMs: LEASE_MS, grants, replies, metrics, log });
  const now = clock.now();
  const flow: BridgeFlow = {
    deviceId: 'tv-1',
    rid: 'r1',
    mode: 'authorization_code',
    state: 'pending',
    scope: 'openid',
    createdAt: now,
    expiresAt: now + 600_000,
    interval: 5,
    secrets: { userCode: 'BCDF-GHJK' },
  };
  await inner.create(flow, { now, maxLive: 5 });
  return { clock, inner, store, metrics, sent, grants, updater, flow };
}

const ids = { deviceId: 'tv-1', rid: 'r1' };

describe('flow updater', () => {
  it('writes the flow.expired audit line when the clock ends a pending flow (once)', async () => {
    const lines: string[] = [];
    const { updater, clock } = await setup(undefined, capturingLogger(lines, 'info'));
    clock.advance(600_001);
    await updater.update({ ...ids, event: { type: 'tick' } });
    await updater.update({ ...ids, event: { type: 'tick' } });
    const audited = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => 'event' in l);
    expect(audited).toEqual([
      expect.objectContaining({
        event: 'flow.expired',
        ...ids,
        mode: 'authorization_code',
        reason: 'expired_token',
      }),
    ]);
  });

  it('answers a status with the pending view and writes nothing', async () => {
    const { updater, sent, inner, flow } = await setup();
    const now = flow.createdAt;
    const r = await updater.update({ ...ids, event: { type: 'status' } });
    expect(r).toMatchObject({ status: 'ok', version: 1, transition: { changed: false, notify: true } });
    expect(sent).toEqual([
      {
        deviceId: 'tv-1',
        reply: {
          v: 1,
          rid: 'r1',
          status: 'pending',
          user_code: 'BCDF-GHJK',
          verification_uri: 'https://gw.example/device',
          // the QR link carries the code's proof (src/core/scan-link.ts)
          verification_uri_complete: `https://gw.example/device?user_code=BCDF-GHJK&k=${scanProof(keys, 'BCDFGHJK', now + 600_000)}`,
          expires_in: 600,
        },
      },
    ]);
    expect((await inner.get('tv-1', 'r1'))?.version).toBe(1);
  });

  it('writes a result, schedules it, tells the device and marks it delivered', async () => {
    const { updater, sent, inner, metrics, grants } = await setup();
    const token = { access_token: 'at', token_type: 'Bearer', refresh_token: 'rt' };
    const r = await updater.update({ ...ids, event: { type: 'token', token } });
    expect(r).toMatchObject({ status: 'ok', version: 3 });
    expect(sent.map((s) => s.reply)).toEqual([
      { v: 1, rid: 'r1', status: 'authorized', access_token: 'at', token_type: 'Bearer' },
    ]);
    const stored = await inner.get('tv-1', 'r1');
    expect(stored?.flow).toMatchObject({ state: 'authorized', deliveredAt: expect.any(Number) });
    expect(stored?.flow.secrets.token).toEqual({ access_token: 'at', token_type: 'Bearer' });
    expect(await grants.take('tv-1')).toEqual({ refreshToken: 'rt', scope: 'openid' });
    expect(await metrics.value('devicegate_flows_finished_total', { state: 'authorized' })).toBe(1);
    expect(await inner.nextDue()).toBeUndefined();
  });

  it('a token the device key cannot receive ends the flow with one invalid_request reply: no grant, nothing scheduled', async () => {
    const { updater, sent, inner, metrics, grants, flow } = await setup();
    // a flow stored by an older gateway, whose check at req/authorize let the weak key through
    expect(await inner.update({ ...flow, jwk: WEAK_KEY }, 1, { now: flow.createdAt })).toMatchObject({
      status: 'ok',
    });
    const token = { access_token: 'at', token_type: 'Bearer', refresh_token: 'rt' };
    const r = await updater.update({ ...ids, event: { type: 'token', token } });
    expect(r).toMatchObject({ status: 'ok', transition: { changed: true } });
    expect(sent.map((s) => s.reply)).toEqual([
      {
        v: 1,
        rid: 'r1',
        status: 'error',
        error: 'invalid_request',
        error_description:
          'the device key could not be used (jwk: RSA keys must be at least 2048 bits); authorize again with another key',
      },
    ]);
    const stored = await inner.get('tv-1', 'r1');
    expect(stored?.flow).toMatchObject({ state: 'failed', deliveredAt: expect.any(Number) });
    expect(stored?.flow.secrets.token).toBeUndefined();
    expect(await grants.take('tv-1')).toBeUndefined();
    expect(await metrics.value('devicegate_flows_finished_total', { state: 'failed' })).toBe(1);
    expect(await inner.nextDue()).toBeUndefined();
  });

  it('a result stored as authorized with such a key: the visit sends the one error view and marks it delivered', async () => {
    const { updater, sent, inner, clock, flow } = await setup();
    const authorized: BridgeFlow = {
      ...flow,
      state: 'authorized',
      jwk: WEAK_KEY,
      secrets: { userCode: flow.secrets.userCode, token: { access_token: 'at', token_type: 'Bearer' } },
    };
    expect(await inner.update(authorized, 1, { now: clock.now() })).toMatchObject({ status: 'ok' });
    expect(await inner.acquireLease('tv-1', 'r1', 'scheduler', clock.now(), LEASE_MS)).toBe(true);
    const r = await updater.update({ ...ids, event: { type: 'tick' }, leaseToken: 'scheduler' });
    expect(r).toMatchObject({ status: 'ok' });
    expect(sent.map((s) => s.reply)).toEqual([
      expect.objectContaining({ status: 'error', error: 'invalid_request', rid: 'r1' }),
    ]);
    expect(JSON.stringify(sent)).not.toContain('"at"');
    expect((await inner.get('tv-1', 'r1'))?.flow.deliveredAt).toEqual(expect.any(Number));
    expect(await inner.nextDue()).toBeUndefined();
  });

  it('after a conflict reads again and re-applies the event to what the other writer stored', async () => {
    const { updater, inner, metrics, sent } = await setup((store) => async (attempt) => {
      if (attempt !== 1) return;
      // another instance writes first: the person approved meanwhile
      const current = (await store.get('tv-1', 'r1'))!;
      const flow = current.flow;
      if (flow.mode !== 'authorization_code') throw new Error('bridge flow expected');
      await store.update({ ...flow, approvedAt: flow.createdAt + 1 }, current.version, {
        now: flow.createdAt,
      });
    });
    const r = await updater.update({ ...ids, event: { type: 'cancel' } });
    // version 2 is the other writer's, 3 the cancel, 4 the delivery mark
    expect(r).toMatchObject({ status: 'ok', version: 4, transition: { changed: true } });
    const stored = await inner.get('tv-1', 'r1');
    expect(stored?.flow).toMatchObject({
      state: 'cancelled',
      approvedAt: expect.any(Number),
      deliveredAt: expect.any(Number),
    });
    expect(await metrics.value('devicegate_flows_finished_total', { state: 'cancelled' })).toBe(1);
    expect(sent.map((s) => s.reply.status)).toEqual(['error']);
  });

  it('gives up with server_error when every write conflicts', async () => {
    const { updater, inner } = await setup((store) => async () => {
      const current = (await store.get('tv-1', 'r1'))!;
      await store.update({ ...current.flow, interval: current.flow.interval + 1 }, current.version, {
        now: current.flow.createdAt,
      });
    });
    await expect(updater.update({ ...ids, event: { type: 'cancel' } })).rejects.toMatchObject({
      code: 'server_error',
    });
    expect((await inner.get('tv-1', 'r1'))?.flow.state).toBe('pending');
  });

  it('reports a missing flow', async () => {
    const { updater } = await setup();
    expect(await updater.update({ deviceId: 'tv-1', rid: 'nope', event: { type: 'status' } })).toEqual({
      status: 'missing',
    });
  });

  it('with a lease another holds: sends nothing and reports lease_lost', async () => {
    const { updater, inner, clock, sent } = await setup();
    expect(await inner.acquireLease('tv-1', 'r1', 'other', clock.now(), LEASE_MS)).toBe(true);
    const r = await updater.update({ ...ids, event: { type: 'status' }, leaseToken: 'mine' });
    expect(r).toEqual({ status: 'lease_lost' });
    expect(sent).toEqual([]);
  });

  it('reschedules a flow from its state', async () => {
    const { updater, inner, flow } = await setup();
    await inner.schedule('tv-1', 'r1', undefined);
    await updater.reschedule(flow);
    expect(await inner.nextDue()).toBe(flow.expiresAt + 1);
  });
});
