/**
 * The store conformance suite: every behaviour of the store contract (src/store/types.ts), run unchanged against
 * each implementation (store.memory.test.ts, store.redis.test.ts). The memory store is the readable reference;
 * a difference between the two is a bug in one of them.
 *
 * Time: decisions take `now` from the test's clock, which the test moves. Record expiry is the store's own time (the
 * memory store's clock; Redis server time), so expiry checks poll with `waitFor` while moving the clock.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Clock } from '../../src/core/clock.ts';
import type { BridgeFlow, Flow, FlowState } from '../../src/core/flow.ts';
import type { AttemptCounter, FlowStore } from '../../src/store/types.ts';
import { waitFor } from '../helpers/procs.ts';

/** A clock the test can move forward. */
export interface MovableClock extends Clock {
  advance(ms: number): void;
}

export interface StoreUnderTest {
  store: FlowStore;
  clock: MovableClock;
  /**
   * The same store as another instance of the deployment sees it: Redis, a second store object on the same prefix;
   * memory (one instance only), the store itself.
   */
  peer(): FlowStore;
  /** Frees what the factory made (keys, clients); called after every test. */
  cleanup(): Promise<void>;
}

const MINUTE = 60_000;
/** Long enough that no test outlives a flow by accident (the grace period of the stores under test is short). */
const LIFETIME = 10 * MINUTE;

/** A pending bridge flow (the contract does not depend on the mode). */
export function pendingFlow(
  deviceId: string,
  rid: string,
  now: number,
  over: Partial<BridgeFlow> = {},
): BridgeFlow {
  return {
    deviceId,
    rid,
    mode: 'authorization_code',
    state: 'pending',
    scope: 'openid',
    createdAt: now,
    expiresAt: now + LIFETIME,
    interval: 5,
    secrets: { userCode: 'BCDF-GHJK' },
    ...over,
  };
}

function withState(flow: Flow, state: FlowState): Flow {
  switch (state) {
    case 'authorized':
      return {
        ...flow,
        state,
        secrets: { ...flow.secrets, token: { access_token: 'at-1', token_type: 'Bearer' } },
      };
    case 'pending':
    case 'acked':
      return { ...flow, state };
    default:
      return {
        ...flow,
        state,
        error: { code: 'access_denied', description: 'the person denied the request' },
      };
  }
}

/**
 * Registers the conformance suite for one store implementation. `makeStore` is called before every test and must
 * return an empty store whose grace period (time a record stays after `expiresAt`) is short: at most a second.
 */
export function storeConformance(name: string, makeStore: () => Promise<StoreUnderTest>): void {
  describe(`store conformance: ${name}`, () => {
    let store: FlowStore;
    let clock: MovableClock;
    let peer: FlowStore;
    let cleanup: (() => Promise<void>) | undefined;

    beforeEach(async () => {
      const made = await makeStore();
      store = made.store;
      clock = made.clock;
      peer = made.peer();
      cleanup = made.cleanup;
    });

    afterEach(async () => {
      await store.close();
      await peer.close();
      await cleanup?.();
      cleanup = undefined;
    });

    /** Creates a pending flow that is allowed (generous cap) and asserts it was created. */
    async function seed(deviceId: string, rid: string, over: Partial<BridgeFlow> = {}): Promise<BridgeFlow> {
      const now = clock.now();
      const flow = pendingFlow(deviceId, rid, now, over);
      expect(await store.create(flow, { now, maxLive: 100 })).toEqual({ status: 'created', version: 1 });
      return flow;
    }

    describe('create and get', () => {
      it('creates a flow at version 1 and reads it back, secrets included', async () => {
        const now = clock.now();
        const flow = pendingFlow('tv-1', 'r-1', now, {
          device: { name: 'Living room', model: 'X1' },
          secrets: { userCode: 'BCDF-GHJK', codeVerifier: 'v'.repeat(43), nonce: 'n-1' },
        });
        expect(await store.create(flow, { now, maxLive: 5 })).toEqual({ status: 'created', version: 1 });
        expect(await store.get('tv-1', 'r-1')).toEqual({ flow, version: 1 });
      });

      it('get of a flow that was never created is undefined', async () => {
        await seed('tv-1', 'r-1');
        expect(await store.get('tv-1', 'r-2')).toBeUndefined();
        expect(await store.get('tv-2', 'r-1')).toBeUndefined();
      });

      it('a repeated create answers exists with the stored flow, not the new one', async () => {
        const first = await seed('tv-1', 'r-1', { scope: 'openid first' });
        const now = clock.now();
        const again = pendingFlow('tv-1', 'r-1', now, { scope: 'openid second' });
        expect(await store.create(again, { now, maxLive: 5 })).toEqual({
          status: 'exists',
          flow: first,
          version: 1,
        });
        expect((await store.get('tv-1', 'r-1'))?.flow.scope).toBe('openid first');
      });

      it('exists reports the current version after updates', async () => {
        const flow = await seed('tv-1', 'r-1');
        const authorized = withState(flow, 'authorized');
        expect(await store.update(authorized, 1, { now: clock.now() })).toEqual({ status: 'ok', version: 2 });
        const now = clock.now();
        expect(await store.create(pendingFlow('tv-1', 'r-1', now), { now, maxLive: 5 })).toEqual({
          status: 'exists',
          flow: authorized,
          version: 2,
        });
      });

      it('of 20 concurrent creates of one rid exactly one is created; the others see its flow', async () => {
        const now = clock.now();
        const flows = Array.from({ length: 20 }, (_, i) =>
          pendingFlow('tv-1', 'r-1', now, { scope: `s${i}` }),
        );
        const results = await Promise.all(flows.map((f) => store.create(f, { now, maxLive: 5 })));
        const created = results.flatMap((r, i) => (r.status === 'created' ? [i] : []));
        expect(created).toHaveLength(1);
        const winner = flows[created[0]!]!;
        for (const r of results) {
          if (r.status !== 'created') expect(r).toEqual({ status: 'exists', flow: winner, version: 1 });
        }
        expect(await store.get('tv-1', 'r-1')).toEqual({ flow: winner, version: 1 });
      });
    });

    describe('live-flow cap per device', () => {
      it('refuses with limit when the device has maxLive pending flows; other devices are not affected', async () => {
        const now = clock.now();
        expect((await store.create(pendingFlow('tv-1', 'r-1', now), { now, maxLive: 2 })).status).toBe(
          'created',
        );
        expect((await store.create(pendingFlow('tv-1', 'r-2', now), { now, maxLive: 2 })).status).toBe(
          'created',
        );
        expect(await store.create(pendingFlow('tv-1', 'r-3', now), { now, maxLive: 2 })).toEqual({
          status: 'limit',
        });
        expect(await store.get('tv-1', 'r-3')).toBeUndefined();
        expect((await store.create(pendingFlow('tv-2', 'r-3', now), { now, maxLive: 2 })).status).toBe(
          'created',
        );
      });

      it('a repeat of a stored flow is exists, not limit, even at the cap', async () => {
        const now = clock.now();
        const flow = pendingFlow('tv-1', 'r-1', now);
        expect((await store.create(flow, { now, maxLive: 1 })).status).toBe('created');
        expect(await store.create(flow, { now, maxLive: 1 })).toEqual({ status: 'exists', flow, version: 1 });
      });

      it('frees up when a flow finishes', async () => {
        const now = clock.now();
        const flow = pendingFlow('tv-1', 'r-1', now);
        await store.create(flow, { now, maxLive: 1 });
        expect(await store.create(pendingFlow('tv-1', 'r-2', now), { now, maxLive: 1 })).toEqual({
          status: 'limit',
        });
        expect((await store.update(withState(flow, 'denied'), 1, { now })).status).toBe('ok');
        expect((await store.create(pendingFlow('tv-1', 'r-2', now), { now, maxLive: 1 })).status).toBe(
          'created',
        );
      });

      it('frees up once a pending flow is past expiresAt (it counts up to and including expiresAt)', async () => {
        const start = clock.now();
        const flow = pendingFlow('tv-1', 'r-1', start, { expiresAt: start + MINUTE });
        await store.create(flow, { now: start, maxLive: 1 });

        const atExpiry = start + MINUTE;
        const second = pendingFlow('tv-1', 'r-2', atExpiry);
        expect(await store.create(second, { now: atExpiry, maxLive: 1 })).toEqual({ status: 'limit' });
        expect((await store.create(second, { now: atExpiry + 1, maxLive: 1 })).status).toBe('created');
      });

      it('liveCount reads what create counts: pending flows up to and including expiresAt, none finished', async () => {
        const start = clock.now();
        expect(await store.liveCount('tv-1', start)).toBe(0);
        const flow = pendingFlow('tv-1', 'r-1', start, { expiresAt: start + MINUTE });
        await store.create(flow, { now: start, maxLive: 5 });
        await store.create(pendingFlow('tv-1', 'r-2', start), { now: start, maxLive: 5 });
        await store.create(withState(pendingFlow('tv-1', 'r-3', start), 'failed'), {
          now: start,
          maxLive: 5,
        });
        expect(await store.liveCount('tv-1', start)).toBe(2);
        expect(await store.liveCount('tv-2', start)).toBe(0);
        expect(await store.liveCount('tv-1', start + MINUTE)).toBe(2);
        expect(await store.liveCount('tv-1', start + MINUTE + 1)).toBe(1);
        expect((await store.update(withState(flow, 'denied'), 1, { now: start })).status).toBe('ok');
        expect(await store.liveCount('tv-1', start)).toBe(1);
      });

      it('counts only pending flows', async () => {
        const now = clock.now();
        const finished = withState(pendingFlow('tv-1', 'r-1', now), 'failed');
        expect((await store.create(finished, { now, maxLive: 1 })).status).toBe('created');
        expect((await store.create(pendingFlow('tv-1', 'r-2', now), { now, maxLive: 1 })).status).toBe(
          'created',
        );
      });
    });

    describe('update (compare-and-set)', () => {
      it('writes with the current version, bumps it, and reads back the new flow', async () => {
        const flow = await seed('tv-1', 'r-1');
        const polled: BridgeFlow = { ...flow, interval: 10, approvedAt: clock.now() + 10_000 };
        expect(await store.update(polled, 1, { now: clock.now() })).toEqual({ status: 'ok', version: 2 });
        expect(await store.get('tv-1', 'r-1')).toEqual({ flow: polled, version: 2 });
        const authorized = withState(polled, 'authorized');
        expect(await store.update(authorized, 2, { now: clock.now() })).toEqual({ status: 'ok', version: 3 });
        expect(await store.get('tv-1', 'r-1')).toEqual({ flow: authorized, version: 3 });
      });

      it('a stale version is a conflict and changes nothing', async () => {
        const flow = await seed('tv-1', 'r-1');
        await store.update({ ...flow, interval: 10 }, 1, { now: clock.now() });
        expect(await store.update(withState(flow, 'denied'), 1, { now: clock.now() })).toEqual({
          status: 'conflict',
        });
        expect(await store.get('tv-1', 'r-1')).toEqual({ flow: { ...flow, interval: 10 }, version: 2 });
      });

      it('a flow that does not exist is missing', async () => {
        const flow = pendingFlow('tv-1', 'r-1', clock.now());
        expect(await store.update(flow, 1, { now: clock.now() })).toEqual({ status: 'missing' });
        expect(await store.get('tv-1', 'r-1')).toBeUndefined();
      });

      it('never moves a flow backwards: lower rank or one result replacing another is regress', async () => {
        const flow = await seed('tv-1', 'r-1');
        const now = clock.now();
        const authorized = withState(flow, 'authorized');
        expect(await store.update(authorized, 1, { now })).toEqual({ status: 'ok', version: 2 });
        expect(await store.update(withState(flow, 'pending'), 2, { now })).toEqual({ status: 'regress' });
        expect(await store.update(withState(flow, 'denied'), 2, { now })).toEqual({ status: 'regress' });
        expect(await store.update(withState(flow, 'expired'), 2, { now })).toEqual({ status: 'regress' });
        expect(await store.get('tv-1', 'r-1')).toEqual({ flow: authorized, version: 2 });

        // The same result may be rewritten (e.g. marked delivered), and a result may be acknowledged.
        const delivered = { ...authorized, deliveredAt: now };
        expect(await store.update(delivered, 2, { now })).toEqual({ status: 'ok', version: 3 });
        const acked = withState(delivered, 'acked');
        expect(await store.update(acked, 3, { now })).toEqual({ status: 'ok', version: 4 });
        expect(await store.update(authorized, 4, { now })).toEqual({ status: 'regress' });
        expect(await store.update(withState(flow, 'pending'), 4, { now })).toEqual({ status: 'regress' });
        expect(await store.get('tv-1', 'r-1')).toEqual({ flow: acked, version: 4 });
      });

      it('of two writers with the same version exactly one wins', async () => {
        const flow = await seed('tv-1', 'r-1');
        const now = clock.now();
        const writes = [withState(flow, 'authorized'), withState(flow, 'denied'), { ...flow, interval: 20 }];
        const results = await Promise.all(writes.map((w) => store.update(w, 1, { now })));
        expect(results.filter((r) => r.status === 'ok')).toEqual([{ status: 'ok', version: 2 }]);
        expect(results.filter((r) => r.status === 'conflict')).toHaveLength(2);
        const winner = writes[results.findIndex((r) => r.status === 'ok')];
        expect(await store.get('tv-1', 'r-1')).toEqual({ flow: winner, version: 2 });
      });
    });

    describe('leases', () => {
      const LEASE = 30_000;

      it('a lease held by another token refuses acquire and leased writes (lease_lost) until it runs out', async () => {
        const flow = await seed('tv-1', 'r-1');
        const t0 = clock.now();
        expect(await store.acquireLease('tv-1', 'r-1', 'A', t0, LEASE)).toBe(true);
        expect(await store.acquireLease('tv-1', 'r-1', 'B', t0, LEASE)).toBe(false);
        // Valid up to and including its end.
        expect(await store.acquireLease('tv-1', 'r-1', 'B', t0 + LEASE, LEASE)).toBe(false);
        expect(await store.update({ ...flow, interval: 6 }, 1, { now: t0, leaseToken: 'B' })).toEqual({
          status: 'lease_lost',
        });
        expect(await store.update({ ...flow, interval: 6 }, 1, { now: t0 + LEASE, leaseToken: 'A' })).toEqual(
          {
            status: 'ok',
            version: 2,
          },
        );
        // Without a token, no lease check (device-originated events).
        expect(await store.update({ ...flow, interval: 7 }, 2, { now: t0 })).toEqual({
          status: 'ok',
          version: 3,
        });
      });

      it('the holder may renew; a lease that ran out can be taken over and the old holder loses its writes', async () => {
        const flow = await seed('tv-1', 'r-1');
        const t0 = clock.now();
        expect(await store.acquireLease('tv-1', 'r-1', 'A', t0, LEASE)).toBe(true);
        expect(await store.acquireLease('tv-1', 'r-1', 'A', t0 + 1000, LEASE)).toBe(true);
        const afterRenewal = t0 + 1000 + LEASE + 1;
        clock.advance(afterRenewal - t0);
        expect(
          await store.update({ ...flow, interval: 6 }, 1, { now: afterRenewal, leaseToken: 'A' }),
        ).toEqual({
          status: 'lease_lost',
        });
        expect(await store.acquireLease('tv-1', 'r-1', 'B', afterRenewal, LEASE)).toBe(true);
        expect(
          await store.update({ ...flow, interval: 6 }, 1, { now: afterRenewal, leaseToken: 'A' }),
        ).toEqual({
          status: 'lease_lost',
        });
        expect(
          await store.update({ ...flow, interval: 6 }, 1, { now: afterRenewal, leaseToken: 'B' }),
        ).toEqual({
          status: 'ok',
          version: 2,
        });
      });

      it('release with the wrong token is a no-op; with the holding token it frees the lease', async () => {
        const flow = await seed('tv-1', 'r-1');
        const t0 = clock.now();
        expect(await store.acquireLease('tv-1', 'r-1', 'A', t0, LEASE)).toBe(true);
        await store.releaseLease('tv-1', 'r-1', 'B');
        expect(await store.acquireLease('tv-1', 'r-1', 'C', t0, LEASE)).toBe(false);
        expect(await store.update({ ...flow, interval: 6 }, 1, { now: t0, leaseToken: 'A' })).toEqual({
          status: 'ok',
          version: 2,
        });
        await store.releaseLease('tv-1', 'r-1', 'A');
        expect(await store.update({ ...flow, interval: 7 }, 2, { now: t0, leaseToken: 'A' })).toEqual({
          status: 'lease_lost',
        });
        expect(await store.acquireLease('tv-1', 'r-1', 'C', t0, LEASE)).toBe(true);
      });

      it('a leased write with no lease taken is lease_lost', async () => {
        const flow = await seed('tv-1', 'r-1');
        expect(
          await store.update({ ...flow, interval: 6 }, 1, { now: clock.now(), leaseToken: 'A' }),
        ).toEqual({
          status: 'lease_lost',
        });
      });

      it('a flow that does not exist cannot be leased, and leasing does not create it', async () => {
        expect(await store.acquireLease('tv-1', 'r-1', 'A', clock.now(), LEASE)).toBe(false);
        await store.releaseLease('tv-1', 'r-1', 'A');
        expect(await store.get('tv-1', 'r-1')).toBeUndefined();
        const now = clock.now();
        expect((await store.create(pendingFlow('tv-1', 'r-1', now), { now, maxLive: 1 })).status).toBe(
          'created',
        );
      });

      it('of concurrent acquirers exactly one gets the lease', async () => {
        await seed('tv-1', 'r-1');
        const now = clock.now();
        const tokens = Array.from({ length: 10 }, (_, i) => `T${i}`);
        const got = await Promise.all(tokens.map((t) => store.acquireLease('tv-1', 'r-1', t, now, LEASE)));
        expect(got.filter(Boolean)).toHaveLength(1);
      });
    });

    describe('schedule, claimDue, nextDue', () => {
      const LEASE = 30_000;

      it('nextDue is undefined for an empty schedule, else the earliest due time', async () => {
        expect(await store.nextDue()).toBeUndefined();
        const t = clock.now();
        await store.schedule('tv-1', 'r-1', t + 300);
        await store.schedule('tv-2', 'r-1', t + 100);
        await store.schedule('tv-3', 'r-1', t + 200);
        expect(await store.nextDue()).toBe(t + 100);
        await store.schedule('tv-2', 'r-1', undefined);
        expect(await store.nextDue()).toBe(t + 200);
        await store.schedule('tv-3', 'r-1', t + 400);
        expect(await store.nextDue()).toBe(t + 300);
      });

      it('claims only what is due at now, earliest first, at most limit', async () => {
        const t = clock.now();
        await store.schedule('tv-1', 'r-1', t + 30);
        await store.schedule('tv-2', 'r-2', t + 10);
        await store.schedule('tv-3', 'r-3', t + 20);
        await store.schedule('tv-4', 'r-4', t + 1000);
        expect(await store.claimDue(t, LEASE, 10)).toEqual([]);
        expect(await store.claimDue(t + 30, LEASE, 2)).toEqual([
          { deviceId: 'tv-2', rid: 'r-2' },
          { deviceId: 'tv-3', rid: 'r-3' },
        ]);
        expect(await store.claimDue(t + 30, LEASE, 10)).toEqual([{ deviceId: 'tv-1', rid: 'r-1' }]);
        expect(await store.claimDue(t + 30, LEASE, 0)).toEqual([]);
      });

      it('a claimed flow is not claimable again within the lease, and is after it', async () => {
        const t = clock.now();
        await store.schedule('tv-1', 'r-1', t);
        expect(await store.claimDue(t, LEASE, 10)).toEqual([{ deviceId: 'tv-1', rid: 'r-1' }]);
        expect(await store.nextDue()).toBe(t + LEASE);
        expect(await store.claimDue(t + LEASE - 1, LEASE, 10)).toEqual([]);
        expect(await store.claimDue(t + LEASE, LEASE, 10)).toEqual([{ deviceId: 'tv-1', rid: 'r-1' }]);
        expect(await store.nextDue()).toBe(t + 2 * LEASE);
      });

      it('never returns a flow twice in one claim, even with a zero lease', async () => {
        const t = clock.now();
        await store.schedule('tv-1', 'r-1', t);
        await store.schedule('tv-1', 'r-2', t);
        expect(await store.claimDue(t, 0, 10)).toEqual([
          { deviceId: 'tv-1', rid: 'r-1' },
          { deviceId: 'tv-1', rid: 'r-2' },
        ]);
      });

      it('of concurrent claimers each due flow goes to exactly one', async () => {
        const t = clock.now();
        for (let i = 0; i < 12; i++) await store.schedule('tv-1', `r-${i}`, t + i);
        const claims = await Promise.all(Array.from({ length: 4 }, () => store.claimDue(t + 20, LEASE, 5)));
        const all = claims.flat().map((c) => c.rid);
        expect(all).toHaveLength(12);
        expect(new Set(all).size).toBe(12);
      });

      it('a schedule entry is removed with undefined and replaced by a later schedule', async () => {
        const t = clock.now();
        await store.schedule('tv-1', 'r-1', t);
        await store.schedule('tv-1', 'r-1', t + 50);
        expect(await store.claimDue(t + 49, LEASE, 10)).toEqual([]);
        await store.schedule('tv-1', 'r-1', undefined);
        await store.schedule('tv-1', 'r-1', undefined);
        expect(await store.claimDue(t + 50, LEASE, 10)).toEqual([]);
        expect(await store.nextDue()).toBeUndefined();
      });

      it('create schedules the flow at due, keeps an existing entry, and schedules nothing when refused', async () => {
        const now = clock.now();
        expect(
          (await store.create(pendingFlow('tv-1', 'r-1', now), { now, maxLive: 1, due: now + 100 })).status,
        ).toBe('created');
        expect(await store.nextDue()).toBe(now + 100);
        // A repeat keeps the entry that is there.
        expect(
          (await store.create(pendingFlow('tv-1', 'r-1', now), { now, maxLive: 1, due: now + 5 })).status,
        ).toBe('exists');
        expect(await store.nextDue()).toBe(now + 100);
        // A repeat re-adds a lost entry (the step a crash may have skipped).
        await store.schedule('tv-1', 'r-1', undefined);
        await store.create(pendingFlow('tv-1', 'r-1', now), { now, maxLive: 1, due: now + 7 });
        expect(await store.nextDue()).toBe(now + 7);
        // Refused: no entry for a flow that does not exist.
        expect(
          await store.create(pendingFlow('tv-1', 'r-2', now), { now, maxLive: 1, due: now + 1 }),
        ).toEqual({
          status: 'limit',
        });
        expect(await store.claimDue(now + 1000, LEASE, 10)).toEqual([{ deviceId: 'tv-1', rid: 'r-1' }]);
      });

      it('update does not touch the schedule', async () => {
        const now = clock.now();
        const flow = pendingFlow('tv-1', 'r-1', now);
        await store.create(flow, { now, maxLive: 1, due: now + 100 });
        await store.update(withState(flow, 'authorized'), 1, { now });
        expect(await store.nextDue()).toBe(now + 100);
      });
    });

    describe('user codes', () => {
      /** Creates a pending flow holding the user-code hash `hash`; its status. */
      const createWithCode = async (deviceId: string, rid: string, hash: string, ttlMs = MINUTE) => {
        const now = clock.now();
        const r = await store.create(pendingFlow(deviceId, rid, now), {
          now,
          maxLive: 5,
          userCode: { hash, ttlMs },
        });
        return r.status;
      };

      it('a code is first come first served; find points at the holder; release frees the code', async () => {
        expect(await store.findUserCode('h1')).toBeUndefined();
        expect(await createWithCode('tv-1', 'r-1', 'h1')).toBe('created');
        expect(await createWithCode('tv-2', 'r-9', 'h1')).toBe('code_taken');
        expect(await store.findUserCode('h1')).toEqual({ deviceId: 'tv-1', rid: 'r-1' });
        expect(await createWithCode('tv-2', 'r-9', 'h2')).toBe('created');
        expect(await store.findUserCode('h2')).toEqual({ deviceId: 'tv-2', rid: 'r-9' });
        await store.releaseUserCode('h1');
        expect(await store.findUserCode('h1')).toBeUndefined();
        expect(await store.findUserCode('h2')).toEqual({ deviceId: 'tv-2', rid: 'r-9' });
        expect(await createWithCode('tv-3', 'r-3', 'h1')).toBe('created');
        expect(await store.findUserCode('h1')).toEqual({ deviceId: 'tv-3', rid: 'r-3' });
      });

      it('create with a user code reserves it for the new flow in the same step', async () => {
        const now = clock.now();
        const uc = { hash: 'hc', ttlMs: MINUTE };
        expect(
          await store.create(pendingFlow('tv-1', 'r-1', now), { now, maxLive: 5, userCode: uc }),
        ).toEqual({
          status: 'created',
          version: 1,
        });
        expect(await store.findUserCode('hc')).toEqual({ deviceId: 'tv-1', rid: 'r-1' });
        // another flow drawing the same code: refused, nothing written, the code still points at the first flow
        expect(
          await store.create(pendingFlow('tv-2', 'r-2', now), { now, maxLive: 5, userCode: uc }),
        ).toEqual({
          status: 'code_taken',
        });
        expect(await store.get('tv-2', 'r-2')).toBeUndefined();
        expect(await store.findUserCode('hc')).toEqual({ deviceId: 'tv-1', rid: 'r-1' });
        // and it can go on with another code
        expect(
          await store.create(pendingFlow('tv-2', 'r-2', now), {
            now,
            maxLive: 5,
            userCode: { hash: 'hd', ttlMs: MINUTE },
          }),
        ).toMatchObject({ status: 'created' });
      });

      it('a repeat (exists) or a refusal (limit) reserves no user code', async () => {
        const now = clock.now();
        await store.create(pendingFlow('tv-1', 'r-1', now), {
          now,
          maxLive: 1,
          userCode: { hash: 'h1', ttlMs: MINUTE },
        });
        expect(
          await store.create(pendingFlow('tv-1', 'r-1', now), {
            now,
            maxLive: 1,
            userCode: { hash: 'h2', ttlMs: MINUTE },
          }),
        ).toMatchObject({ status: 'exists' });
        expect(
          await store.create(pendingFlow('tv-1', 'r-2', now), {
            now,
            maxLive: 1,
            userCode: { hash: 'h3', ttlMs: MINUTE },
          }),
        ).toEqual({ status: 'limit' });
        expect(await store.findUserCode('h2')).toBeUndefined();
        expect(await store.findUserCode('h3')).toBeUndefined();
      });

      it('of concurrent creates drawing one code exactly one wins', async () => {
        const got = await Promise.all(
          Array.from({ length: 10 }, (_, i) => createWithCode(`tv-${i}`, 'r-1', 'h1')),
        );
        expect(got.filter((s) => s === 'created')).toHaveLength(1);
        expect(got.filter((s) => s === 'code_taken')).toHaveLength(9);
        const winner = got.indexOf('created');
        expect(await store.findUserCode('h1')).toEqual({ deviceId: `tv-${winner}`, rid: 'r-1' });
      });

      it('a reservation is forgotten after its ttl', async () => {
        expect(await createWithCode('tv-1', 'r-1', 'h1', 100)).toBe('created');
        await waitFor(
          async () => {
            clock.advance(50);
            return (await store.findUserCode('h1')) === undefined;
          },
          10_000,
          'the user code to expire',
        );
        expect(await createWithCode('tv-2', 'r-2', 'h1')).toBe('created');
      });
    });

    describe('one-time values', () => {
      it('take returns the value once, then undefined', async () => {
        expect(await store.takeOnce('s1')).toBeUndefined();
        await store.putOnce('s1', 'value-1', MINUTE);
        await store.putOnce('s2', 'value-2', MINUTE);
        expect(await store.takeOnce('s1')).toBe('value-1');
        expect(await store.takeOnce('s1')).toBeUndefined();
        expect(await store.takeOnce('s2')).toBe('value-2');
      });

      it('of concurrent takers exactly one gets the value', async () => {
        await store.putOnce('s1', 'value-1', MINUTE);
        const got = await Promise.all(Array.from({ length: 10 }, () => store.takeOnce('s1')));
        expect(got.filter((v) => v !== undefined)).toEqual(['value-1']);
      });

      it('get reads without consuming; delete forgets; a taken value is gone for get too', async () => {
        expect(await store.getOnce('s1')).toBeUndefined();
        await store.putOnce('s1', 'value-1', MINUTE);
        await store.putOnce('s2', 'value-2', MINUTE);
        expect(await store.getOnce('s1')).toBe('value-1');
        expect(await store.getOnce('s1')).toBe('value-1');
        await store.deleteOnce('s1');
        expect(await store.getOnce('s1')).toBeUndefined();
        await store.deleteOnce('s1');
        expect(await store.takeOnce('s2')).toBe('value-2');
        expect(await store.getOnce('s2')).toBeUndefined();
      });

      it('a value is gone after its ttl', async () => {
        await store.putOnce('s1', 'value-1', 100);
        // A take consumes, so watch a user code reserved just after with the same ttl: once it is gone, so is s1.
        const now = clock.now();
        const probe = { hash: 'probe', ttlMs: 100 };
        await store.create(pendingFlow('tv-1', 'r-1', now), { now, maxLive: 5, userCode: probe });
        await waitFor(
          async () => {
            clock.advance(50);
            return (await store.findUserCode('probe')) === undefined;
          },
          10_000,
          'the probe to expire',
        );
        expect(await store.getOnce('s1')).toBeUndefined();
        expect(await store.takeOnce('s1')).toBeUndefined();
      });
    });

    describe('expiry', () => {
      it('a record disappears after expiresAt + grace, taking its lease along', async () => {
        const now = clock.now();
        const flow = pendingFlow('tv-1', 'r-1', now, { expiresAt: now + 100 });
        expect((await store.create(flow, { now, maxLive: 5 })).status).toBe('created');
        expect(await store.acquireLease('tv-1', 'r-1', 'A', now, 60_000)).toBe(true);
        expect(await store.get('tv-1', 'r-1')).toEqual({ flow, version: 1 });
        await waitFor(
          async () => {
            clock.advance(50);
            return (await store.get('tv-1', 'r-1')) === undefined;
          },
          10_000,
          'the flow record to expire',
        );
        expect(await store.update(withState(flow, 'expired'), 1, { now: clock.now() })).toEqual({
          status: 'missing',
        });
        expect(await store.acquireLease('tv-1', 'r-1', 'B', clock.now(), 60_000)).toBe(false);
        // The rid is free again and the expired flow no longer counts against the cap.
        const later = clock.now();
        expect(await store.create(pendingFlow('tv-1', 'r-1', later), { now: later, maxLive: 1 })).toEqual({
          status: 'created',
          version: 1,
        });
        expect(await store.acquireLease('tv-1', 'r-1', 'B', later, 60_000)).toBe(true);
      });
      it('a flow created already past expiresAt + grace is not readable and does not count', async () => {
        const now = clock.now();
        const stale = pendingFlow('tv-1', 'r-1', now - LIFETIME, { expiresAt: now - MINUTE });
        expect(await store.create(stale, { now, maxLive: 1 })).toEqual({ status: 'created', version: 1 });
        expect(await store.get('tv-1', 'r-1')).toBeUndefined();
        expect((await store.create(pendingFlow('tv-1', 'r-2', now), { now, maxLive: 1 })).status).toBe(
          'created',
        );
      });
    });

    describe('revoked devices', () => {
      it('revoke, restore and list: each call says whether the set changed', async () => {
        expect(await store.revokedDevices()).toEqual([]);
        expect(await store.revokeDevice('tv-2')).toBe(true);
        expect(await store.revokeDevice('tv-1')).toBe(true);
        expect(await store.revokeDevice('tv-1')).toBe(false);
        expect(await store.isRevoked('tv-1')).toBe(true);
        expect(await store.isRevoked('tv-3')).toBe(false);
        expect(await store.revokedDevices()).toEqual(['tv-1', 'tv-2']);
        expect(await store.restoreDevice('tv-1')).toBe(true);
        expect(await store.restoreDevice('tv-1')).toBe(false);
        expect(await store.revokedDevices()).toEqual(['tv-2']);
      });

      it('another instance sees the set, and it does not expire with time', async () => {
        await store.revokeDevice('tv-1');
        clock.advance(400 * 86_400_000);
        expect(await peer.isRevoked('tv-1')).toBe(true);
        expect(await peer.revokedDevices()).toEqual(['tv-1']);
      });

      it('every watcher on every instance hears each revoke (a repeat too) and restore, until it closes', async () => {
        const heard: Array<[string, string, boolean]> = [];
        const a = await store.watchRevocations((c) => heard.push(['a', c.deviceId, c.revoked]));
        const b = await peer.watchRevocations((c) => heard.push(['b', c.deviceId, c.revoked]));
        await peer.revokeDevice('tv-1');
        await store.revokeDevice('tv-1');
        await store.restoreDevice('tv-1');
        await waitFor(async () => heard.length === 6, 5000, 'six notifications');
        for (const who of ['a', 'b']) {
          expect(heard.filter(([w]) => w === who).map(([, d, r]) => [d, r])).toEqual([
            ['tv-1', true],
            ['tv-1', true],
            ['tv-1', false],
          ]);
        }
        await a.close();
        await store.revokeDevice('tv-2');
        await waitFor(async () => heard.length === 7, 5000, 'the open watcher to hear tv-2');
        expect(heard[6]).toEqual(['b', 'tv-2', true]);
        await b.close();
      });
    });

    it('liveFlows lists the pending flows that count against the cap', async () => {
      await seed('tv-1', 'r-1');
      const short = await seed('tv-1', 'r-2', { expiresAt: clock.now() + 1000 });
      await seed('tv-2', 'r-3');
      const done = await seed('tv-1', 'r-4');
      expect(await store.update(withState(done, 'denied'), 1, { now: clock.now() })).toEqual({
        status: 'ok',
        version: 2,
      });
      expect((await store.liveFlows('tv-1', clock.now())).sort()).toEqual(['r-1', 'r-2']);
      expect(await store.liveFlows('tv-1', short.expiresAt + 1)).toEqual(['r-1']);
      expect(await store.liveFlows('tv-9', clock.now())).toEqual([]);
    });

    it('ping resolves while the store is reachable', async () => {
      await expect(store.ping()).resolves.toBeUndefined();
    });
  });
}

export interface CounterUnderTest {
  counter: AttemptCounter;
  clock: MovableClock;
  /** Frees what the factory made (keys); called after every test. */
  cleanup(): Promise<void>;
}

/**
 * Registers the conformance suite of the attempt counter (`AttemptCounter` in src/store/types.ts) for one
 * implementation. `makeCounter` is called before every test and must return a counter with no counts. Expiry is the
 * implementation's own time (the memory counter's clock; Redis server time), so the expiry check moves the clock and
 * waits in real time.
 */
export function attemptCounterConformance(name: string, makeCounter: () => Promise<CounterUnderTest>): void {
  describe(`attempt counter conformance: ${name}`, () => {
    let made: CounterUnderTest;

    beforeEach(async () => {
      made = await makeCounter();
    });

    afterEach(async () => {
      await made.cleanup();
    });

    it('returns the count after each change; -1 takes one back; keys count apart', async () => {
      const { counter } = made;
      expect(await counter.add('a', 1, MINUTE)).toBe(1);
      expect(await counter.add('a', 1, MINUTE)).toBe(2);
      expect(await counter.add('b', 1, MINUTE)).toBe(1);
      expect(await counter.add('a', -1, MINUTE)).toBe(1);
      expect(await counter.add('a', -1, MINUTE)).toBe(0);
      expect(await counter.add('a', 1, MINUTE)).toBe(1);
      expect(await counter.add('b', 1, MINUTE)).toBe(2);
    });

    it('counts every one of concurrent adds, each seeing a different count', async () => {
      const counts = await Promise.all(Array.from({ length: 20 }, () => made.counter.add('c', 1, MINUTE)));
      expect(counts.sort((x, y) => x - y)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    });

    it('forgets a count ttlMs after its last change, and not before', async () => {
      const { counter, clock } = made;
      const ttlMs = 300;
      await counter.add('e', 1, ttlMs);
      await counter.add('e', 1, ttlMs);
      expect(await counter.add('e', 1, ttlMs)).toBe(3);
      // each change restarts the lifetime: halfway through, the count is still there
      clock.advance(ttlMs / 2);
      expect(await counter.add('e', 1, ttlMs)).toBe(4);
      clock.advance(ttlMs + 1);
      await new Promise((resolve) => setTimeout(resolve, ttlMs + 100));
      expect(await counter.add('e', 1, ttlMs)).toBe(1);
    });
  });
}
