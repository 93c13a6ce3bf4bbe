/**
 * The scheduler (src/service/scheduler.ts) on fake time, over the real MemoryStore and FlowService, with a fake relay
 * upstream and a recording transport: when flows are polled, how a lease another holder has is waited out, what
 * close() gives back, and how a store failure backs off.
 */
import { generateKeyPairSync } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.ts';
import { deriveKeys } from '../../src/core/crypto.ts';
import type { PollOutcome } from '../../src/core/engine.ts';
import { UnavailableError } from '../../src/core/errors.ts';
import type { Flow, PublicJwk, RelayFlow } from '../../src/core/flow.ts';
import type { DeviceReply } from '../../src/core/protocol.ts';
import { createLogger } from '../../src/observability/log.ts';
import { Metrics } from '../../src/observability/metrics.ts';
import { createFlowService } from '../../src/service/flows.ts';
import { RelayStarter } from '../../src/service/start-relay.ts';
import { Scheduler } from '../../src/service/scheduler.ts';
import { ApprovalCap, OVER_CAP } from '../../src/service/approval-cap.ts';
import { MemoryAttemptCounter } from '../../src/store/memory-attempts.ts';
import { flowCodec } from '../../src/store/codec.ts';
import { MemoryStore } from '../../src/store/memory.ts';
import type { DeviceTransport } from '../../src/transport/types.ts';
import type { RelayUpstream } from '../../src/upstream/types.ts';
import { FakeTime } from '../helpers/clock.ts';

const SECRET = 's'.repeat(40);
const LEASE_MS = 4000;
/** The scheduler's look-again delay for a flow another instance holds: a quarter of the lease, at most 1 s. */
const RETRY_MS = 1000;
const MAX_IDLE_MS = 250;
const INTERVAL_S = 5;

/** A relay upstream that records each poll (fake time, device code) and answers `authorization_pending`. */
class FakeRelayUpstream implements RelayUpstream {
  readonly kind = 'device';
  readonly polls: Array<{ at: number; deviceCode: string }> = [];
  answer: () => Promise<PollOutcome> = async () => ({ kind: 'authorization_pending' });
  readonly #time: FakeTime;

  constructor(time: FakeTime) {
    this.#time = time;
  }

  async startDeviceAuthorization(): Promise<never> {
    throw new Error('not used: flows are created in the store directly');
  }

  pollDeviceToken(deviceCode: string): Promise<PollOutcome> {
    this.polls.push({ at: this.#time.now(), deviceCode });
    return this.answer();
  }

  async refresh(): Promise<never> {
    throw new Error('not used');
  }

  async revoke(): Promise<never> {
    throw new Error('not used');
  }
}

/**
 * The real MemoryStore, with a switch that makes the scheduler's schedule reads fail, a pause on reads, and a window
 * of fake time in which every flow write and lease call fails as an unreachable Redis does.
 */
class TestStore extends MemoryStore {
  down = false;
  /** Until this fake time, `update` and `acquireLease` throw `UnavailableError` (Redis restarting). */
  writesDownUntil = 0;
  /** Writes refused while down. */
  refusedWrites = 0;
  /** When set, the next read stands still this long (the process is paused in the middle of a visit). */
  pauseOnGet = 0;
  readonly claims: number[] = [];
  readonly #time: FakeTime;

  constructor(time: FakeTime) {
    super({ codec: flowCodec(deriveKeys(SECRET)), clock: time });
    this.#time = time;
  }

  override async claimDue(now: number, leaseMs: number, limit: number) {
    this.claims.push(this.#time.now());
    if (this.down) throw new UnavailableError('store', 'redis call failed');
    return super.claimDue(now, leaseMs, limit);
  }

  override async update(next: Flow, version: number, opts: { now: number; leaseToken?: string }) {
    this.#refuseWhileDown();
    return super.update(next, version, opts);
  }

  override async acquireLease(deviceId: string, rid: string, token: string, now: number, leaseMs: number) {
    this.#refuseWhileDown();
    return super.acquireLease(deviceId, rid, token, now, leaseMs);
  }

  #refuseWhileDown(): void {
    if (this.#time.now() >= this.writesDownUntil) return;
    this.refusedWrites += 1;
    throw new UnavailableError('store', 'redis is restarting');
  }

  override async get(deviceId: string, rid: string) {
    this.#time.advance(this.pauseOnGet);
    this.pauseOnGet = 0;
    return super.get(deviceId, rid);
  }
}

let scheduler: Scheduler | undefined;

afterEach(async () => {
  await scheduler?.close();
  scheduler = undefined;
});

/** `approvalsPerPerson`: the approval cap (DEVICEGATE_APPROVALS_PER_PERSON); default loadConfig's. */
function setup(o: { approvalsPerPerson?: number } = {}) {
  const time = new FakeTime();
  const t0 = time.now();
  const config = loadConfig({
    DEVICEGATE_UPSTREAM_ISSUER: 'https://idp.example',
    DEVICEGATE_UPSTREAM_CLIENT_ID: 'gateway',
    DEVICEGATE_UPSTREAM_MODE: 'device',
    DEVICEGATE_SECRET: SECRET,
    DEVICEGATE_LEASE_MS: String(LEASE_MS),
    DEVICEGATE_LOG_LEVEL: 'silent',
    ...(o.approvalsPerPerson !== undefined && {
      DEVICEGATE_APPROVALS_PER_PERSON: String(o.approvalsPerPerson),
    }),
  });
  const log = createLogger('silent');
  const metrics = new Metrics();
  const store = new TestStore(time);
  const upstream = new FakeRelayUpstream(time);
  const published: Array<{ at: number; deviceId: string; reply: DeviceReply }> = [];
  const transport: DeviceTransport = {
    start: async () => {},
    publish: async (deviceId, reply) => {
      published.push({ at: time.now(), deviceId, reply });
    },
    status: () => ({ connected: true, detail: 'recording' }),
    load: () => ({ saturated: false, detail: 'recording' }),
    close: async () => {},
  };
  const keys = deriveKeys(SECRET);
  const service = createFlowService({
    config,
    publicUrl: 'https://gw.example',
    clock: time,
    store,
    upstream,
    starter: new RelayStarter({
      store,
      upstream,
      clock: time,
      codeTtlSeconds: config.codeTtlSeconds,
      maxFlowsPerDevice: config.maxFlowsPerDevice,
      leaseMs: config.leaseMs,
    }),
    keys,
    log,
    metrics,
    channel: transport,
  });
  const start = () => {
    scheduler = new Scheduler({
      store,
      service: service.updater,
      upstream,
      clock: time,
      timers: time,
      log,
      metrics,
      leaseMs: LEASE_MS,
      cap: new ApprovalCap({
        counter: new MemoryAttemptCounter(time),
        keys,
        clock: time,
        perHour: config.approvalsPerPerson,
        metrics,
      }),
      maxIdleMs: MAX_IDLE_MS,
    });
    scheduler.start();
    return scheduler;
  };
  /** A pending relay flow whose first poll is due `firstPollIn` ms from now, stored and scheduled. */
  const relayFlow = async (rid: string, firstPollIn: number): Promise<RelayFlow> => {
    const now = time.now();
    const flow: RelayFlow = {
      deviceId: 'tv-1',
      rid,
      mode: 'device',
      state: 'pending',
      scope: 'openid',
      createdAt: now,
      expiresAt: now + 600_000,
      interval: INTERVAL_S,
      nextPollAt: now + firstPollIn,
      verificationUri: 'https://idp.example/device',
      secrets: { userCode: 'WDJB-MJHT', deviceCode: `dc-${rid}` },
    };
    expect(await store.create(flow, { now, maxLive: 3, due: flow.nextPollAt })).toEqual({
      status: 'created',
      version: 1,
    });
    return flow;
  };
  return { time, t0, store, upstream, published, metrics, start, relayFlow };
}

function deferred<T>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

describe('scheduler', () => {
  it('polls a due relay flow once per interval', async () => {
    const { time, t0, upstream, metrics, start, relayFlow } = setup();
    await relayFlow('r-1', 2000);
    start();
    await time.tick(1999);
    expect(upstream.polls).toEqual([]);
    await time.tick(1 + 3 * INTERVAL_S * 1000);
    expect(upstream.polls).toEqual(
      [2000, 7000, 12_000, 17_000].map((ms) => ({ at: t0 + ms, deviceCode: 'dc-r-1' })),
    );
    expect(await metrics.value('devicegate_upstream_polls_total', { outcome: 'authorization_pending' })).toBe(
      4,
    );
  });

  it('delivers the token of a poll to the device and stops polling', async () => {
    const { time, t0, store, upstream, published, start, relayFlow } = setup();
    await relayFlow('r-1', 1000);
    upstream.answer = async () => ({ kind: 'token', token: { access_token: 'at-1', token_type: 'Bearer' } });
    start();
    await time.tick(20_000);
    expect(upstream.polls).toHaveLength(1);
    expect(published).toEqual([
      {
        at: t0 + 1000,
        deviceId: 'tv-1',
        reply: expect.objectContaining({ rid: 'r-1', status: 'authorized', access_token: 'at-1' }),
      },
    ]);
    expect((await store.get('tv-1', 'r-1'))?.flow).toMatchObject({
      state: 'authorized',
      deliveredAt: expect.any(Number),
    });
  });

  it('a token the device key cannot receive: one invalid_request reply, then no more polls and no delivery retries', async () => {
    const { time, t0, store, upstream, published, start, relayFlow } = setup();
    const flow = await relayFlow('r-1', 1000);
    // stored by an older gateway with a 1024-bit key (refused at req/authorize now; jose will not encrypt to it)
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ format: 'jwk' });
    expect(await store.update({ ...flow, jwk: weak as PublicJwk }, 1, { now: t0 })).toMatchObject({
      status: 'ok',
    });
    upstream.answer = async () => ({ kind: 'token', token: { access_token: 'at-1', token_type: 'Bearer' } });
    start();
    await time.tick(1000 + 5 * LEASE_MS);
    expect(upstream.polls).toHaveLength(1);
    expect(published).toEqual([
      {
        at: t0 + 1000,
        deviceId: 'tv-1',
        reply: expect.objectContaining({ rid: 'r-1', status: 'error', error: 'invalid_request' }),
      },
    ]);
    expect((await store.get('tv-1', 'r-1'))?.flow).toMatchObject({ state: 'failed', deliveredAt: t0 + 1000 });
  });

  it('relay: a token answer naming a person over the approval cap becomes access_denied, the token undelivered', async () => {
    const { time, store, upstream, published, metrics, start, relayFlow } = setup({ approvalsPerPerson: 1 });
    await relayFlow('r-1', 1000);
    await relayFlow('r-2', 2000);
    let n = 0;
    upstream.answer = async () => ({
      kind: 'token',
      token: { access_token: `at-${++n}`, token_type: 'Bearer' },
      subject: 'person-1',
    });
    start();
    await time.tick(5000);
    expect(upstream.polls).toHaveLength(2);
    expect(published.map((p) => p.reply)).toEqual([
      expect.objectContaining({ rid: 'r-1', status: 'authorized', access_token: 'at-1' }),
      expect.objectContaining({
        rid: 'r-2',
        status: 'error',
        error: 'access_denied',
        error_description: OVER_CAP,
      }),
    ]);
    expect(JSON.stringify(published)).not.toContain('at-2');
    expect((await store.get('tv-1', 'r-2'))?.flow.state).toBe('failed'); // a poll error: the device got access_denied
    expect(await metrics.value('devicegate_approvals_capped_total')).toBe(1);
  });

  it('looks again soon at a flow whose lease another holder has, and takes it over once that lease runs out', async () => {
    const { time, t0, store, upstream, published, start, relayFlow } = setup();
    // A result that another instance wrote and then died before delivering: due a lease from now.
    const flow = await relayFlow('r-1', 0);
    expect(await store.acquireLease('tv-1', 'r-1', 'other', t0, LEASE_MS)).toBe(true);
    const token = { access_token: 'at-1', token_type: 'Bearer' };
    const authorized: Flow = { ...flow, state: 'authorized', secrets: { ...flow.secrets, token } };
    expect(await store.update(authorized, 1, { now: t0, leaseToken: 'other' })).toEqual({
      status: 'ok',
      version: 2,
    });
    await store.schedule('tv-1', 'r-1', t0 + LEASE_MS);

    start();
    await time.tick(LEASE_MS);
    // The lease is valid up to and including t0 + LEASE_MS; until then the flow is only looked at.
    expect(published).toEqual([]);
    await time.tick(RETRY_MS);
    // Taken over within the look-again delay after the lease ran out, not a whole lease later.
    expect(published).toEqual([
      {
        at: t0 + LEASE_MS + RETRY_MS,
        deviceId: 'tv-1',
        reply: expect.objectContaining({ status: 'authorized' }),
      },
    ]);
    expect(upstream.polls).toEqual([]);
    await time.tick(3 * LEASE_MS);
    expect(published).toHaveLength(1);
  });

  it('a visit paused past its lease does not poll: the flow is polled once, by the next visit', async () => {
    const { time, t0, store, upstream, start, relayFlow } = setup();
    await relayFlow('r-1', 0);
    store.pauseOnGet = LEASE_MS;
    start();
    await time.tick(0);
    expect(upstream.polls).toEqual([]);
    await time.tick(INTERVAL_S * 1000 - 1);
    expect(upstream.polls.map((p) => p.at - t0)).toEqual([LEASE_MS]);
  });

  it('close() waits for a visit in flight and gives its lease back', async () => {
    const { time, t0, store, upstream, start, relayFlow } = setup();
    await relayFlow('r-1', 0);
    const answer = deferred<PollOutcome>();
    upstream.answer = () => answer.promise;
    const s = start();
    await time.tick(LEASE_MS); // the poll is slow: the lease is renewed meanwhile
    expect(upstream.polls).toHaveLength(1);
    expect(await store.acquireLease('tv-1', 'r-1', 'other', time.now(), LEASE_MS)).toBe(false);

    let closed = false;
    const closing = s.close().then(() => {
      closed = true;
    });
    await time.tick(100);
    expect(closed).toBe(false);
    answer.resolve({ kind: 'authorization_pending' });
    await closing;
    // The poll's answer was written under the lease, and the lease is free for any other instance at once.
    const after = (await store.get('tv-1', 'r-1'))?.flow;
    expect(after?.mode === 'device' && after.nextPollAt).toBe(t0 + LEASE_MS + 100 + INTERVAL_S * 1000);
    expect(await store.acquireLease('tv-1', 'r-1', 'other', time.now(), LEASE_MS)).toBe(true);
    // No sleep or renewal timer is left behind.
    expect(time.pending).toBe(0);
  });

  it('backs off while the store fails, and resumes its normal pace once it answers again', async () => {
    const { time, t0, store, upstream, start, relayFlow } = setup();
    await relayFlow('r-1', 20_000);
    store.down = true;
    start();
    await time.tick(15_000);
    // maxIdleMs × 2^failures, at most 5 s
    expect(store.claims.map((at) => at - t0)).toEqual([0, 500, 1500, 3500, 7500, 12_500]);
    store.down = false;
    await time.tick(5000);
    const after = store.claims.filter((at) => at > t0 + 17_500).map((at) => at - t0);
    expect(after.slice(0, 4)).toEqual([17_750, 18_000, 18_250, 18_500]);
    expect(upstream.polls.map((p) => p.at - t0)).toEqual([20_000]);
  });

  describe('a final poll answer is never dropped because the store failed (issue 13)', () => {
    const TOKEN = { access_token: 'at-1', token_type: 'Bearer' };

    it('the token is kept and its write retried: the device gets it, the redeemed device code is never polled again', async () => {
      const { time, t0, store, upstream, published, start, relayFlow } = setup();
      await relayFlow('r-1', 1000);
      upstream.answer = async () => {
        store.writesDownUntil = time.now() + 3000; // Redis goes away right after the upstream answered
        return { kind: 'token', token: TOKEN };
      };
      start();
      await time.tick(1000 + 3 * LEASE_MS);
      expect(store.refusedWrites).toBeGreaterThan(3);
      expect(upstream.polls).toHaveLength(1);
      expect(published.map((p) => p.reply)).toEqual([
        expect.objectContaining({ rid: 'r-1', status: 'authorized', access_token: 'at-1' }),
      ]);
      // written within the retry backoff (≤ 2 s) after the store came back
      expect(published[0]!.at).toBeLessThanOrEqual(t0 + 1000 + 3000 + 2000);
      expect((await store.get('tv-1', 'r-1'))?.flow).toMatchObject({
        state: 'authorized',
        deliveredAt: expect.any(Number),
      });
    });

    it('an outage longer than the lease: the lease is taken again and the denial still written once', async () => {
      const { time, store, upstream, published, start, relayFlow } = setup();
      await relayFlow('r-1', 1000);
      upstream.answer = async () => {
        store.writesDownUntil = time.now() + 2 * LEASE_MS; // renewals fail too: the first lease runs out
        return { kind: 'access_denied' };
      };
      start();
      await time.tick(1000 + 5 * LEASE_MS);
      expect(upstream.polls).toHaveLength(1);
      expect(published.map((p) => p.reply)).toEqual([
        expect.objectContaining({ rid: 'r-1', status: 'error', error: 'access_denied' }),
      ]);
      expect((await store.get('tv-1', 'r-1'))?.flow.state).toBe('denied');
    });

    it('a code redeemed by a poll whose answer was lost: invalid_grant is told as what it may be, not expired_token', async () => {
      const { time, t0, store, upstream, published, start, relayFlow } = setup();
      const flow = await relayFlow('r-1', 0);
      // Another instance marked its poll (under its lease) and was killed before it wrote the answer.
      expect(await store.acquireLease('tv-1', 'r-1', 'killed', t0, LEASE_MS)).toBe(true);
      expect(
        await store.update({ ...flow, pollSentAt: t0 }, 1, { now: t0, leaseToken: 'killed' }),
      ).toMatchObject({
        status: 'ok',
      });
      await store.schedule('tv-1', 'r-1', t0 + LEASE_MS);
      upstream.answer = async () => ({ kind: 'invalid_grant' });
      start();
      // The takeover first gives the killed holder's answer a lease to arrive (a holder still retrying its write
      // would win), then polls.
      await time.tick(LEASE_MS + RETRY_MS);
      expect(upstream.polls).toEqual([]);
      expect((await store.get('tv-1', 'r-1'))?.flow).toMatchObject({ lostPoll: true });
      await time.tick(LEASE_MS + RETRY_MS);
      expect(upstream.polls).toHaveLength(1);
      expect(published.map((p) => p.reply)).toEqual([
        expect.objectContaining({
          rid: 'r-1',
          status: 'error',
          error: 'server_error',
          error_description:
            'the approval may have been used by a gateway instance that stopped; start a new request',
        }),
      ]);
    });
  });
});
