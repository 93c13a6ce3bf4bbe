/**
 * The store conformance suite on the Redis store, against a private redis-server (never the shared 6379), plus what
 * only Redis has: the key layout, relative TTLs, no plaintext secrets in a dump, and behaviour while Redis is down.
 */
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { UnavailableError } from '../../src/core/errors.ts';
import { deriveKeys } from '../../src/core/crypto.ts';
import type { Flow } from '../../src/core/flow.ts';
import { flowCodec } from '../../src/store/codec.ts';
import { RedisStore } from '../../src/store/redis/index.ts';
import { OffsetClock } from '../helpers/clock.ts';
import { type ManagedProcess, startRedis, stopAll, waitFor } from '../helpers/procs.ts';
import { pendingFlow, storeConformance } from './store.contract.ts';

const keys = deriveKeys('x'.repeat(32));
const codec = flowCodec(keys);
/** Short, so expiry checks finish quickly; Redis counts it in real time. */
const GRACE_MS = 200;

let server: ManagedProcess;
let redis: Redis;
let prefixes = 0;

function newClient(): Redis {
  const client = new Redis(server.url, RedisStore.clientOptions());
  client.on('error', () => {}); // connection errors surface as rejected calls; the events are expected here
  return client;
}

async function keysOf(client: Redis, prefix: string): Promise<string[]> {
  const found: string[] = [];
  let cursor = '0';
  do {
    const [next, batch] = await client.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    found.push(...batch);
  } while (cursor !== '0');
  return found.sort();
}

async function deleteKeys(client: Redis, prefix: string): Promise<void> {
  const found = await keysOf(client, prefix);
  if (found.length > 0) await client.del(...found);
}

beforeAll(async () => {
  server = await startRedis();
  redis = newClient();
});

afterAll(async () => {
  redis.disconnect();
  await stopAll();
});

storeConformance('redis', async () => {
  const keyPrefix = `t${++prefixes}:`;
  return {
    store: new RedisStore({ redis, keyPrefix, codec, graceMs: GRACE_MS }),
    clock: new OffsetClock(),
    peer: () => new RedisStore({ redis, keyPrefix, codec, graceMs: GRACE_MS }),
    cleanup: () => deleteKeys(redis, keyPrefix),
  };
});

describe('redis store', () => {
  let prefix: string;
  let store: RedisStore;

  function freshStore(graceMs?: number): RedisStore {
    prefix = `x${++prefixes}:`;
    store = new RedisStore({ redis, keyPrefix: prefix, codec, ...(graceMs !== undefined && { graceMs }) });
    return store;
  }

  afterEach(async () => {
    if (redis.status === 'ready') await deleteKeys(redis, prefix);
  });

  it('uses the documented key layout, with the device as hash tag of the flow and its live set', async () => {
    freshStore();
    const now = Date.now();
    await store.create(pendingFlow('tv-123456', 'r-1', now), {
      now,
      maxLive: 5,
      due: now + 1000,
      userCode: { hash: 'c0ffee', ttlMs: 60_000 },
    });
    await store.putOnce('5ta7e', 'v', 60_000);
    expect(await keysOf(redis, prefix)).toEqual(
      [
        `${prefix}d:{tv-123456}`,
        `${prefix}f:{tv-123456}:r-1`,
        `${prefix}once:5ta7e`,
        `${prefix}sched`,
        `${prefix}uc:c0ffee`,
      ].sort(),
    );
    expect(await redis.hgetall(`${prefix}f:{tv-123456}:r-1`)).toEqual({
      v: '1',
      s: 'pending',
      b: expect.any(String),
    });
    expect(await redis.zrange(`${prefix}d:{tv-123456}`, '0', '-1', 'WITHSCORES')).toEqual([
      'r-1',
      String(now + 10 * 60_000),
    ]);
    expect(await redis.zrange(`${prefix}sched`, '0', '-1')).toEqual(['tv-123456/r-1']);
    // Everything but the schedule expires by itself, so the key count returns to baseline.
    for (const key of await keysOf(redis, prefix)) {
      if (key !== `${prefix}sched`) expect([key, (await redis.pttl(key)) > 0]).toEqual([key, true]);
    }
  });

  it('create writes the flow, its live-set member, its user code and its schedule entry in one script, or none of them', async () => {
    freshStore();
    const now = Date.now();
    const uc = { hash: 'c0ffee', ttlMs: 60_000 };
    const create = (rid: string, hash: string, maxLive = 5) =>
      store.create(pendingFlow('tv-1', rid, now), {
        now,
        maxLive,
        due: now + 1000,
        userCode: { ...uc, hash },
      });
    expect(await create('r-1', 'c0ffee')).toEqual({ status: 'created', version: 1 });
    const before = await keysOf(redis, prefix);
    const sched = await redis.zrange(`${prefix}sched`, '0', '-1');
    const live = await redis.zrange(`${prefix}d:{tv-1}`, '0', '-1');
    expect([sched, live]).toEqual([['tv-1/r-1'], ['r-1']]);

    // Refused for a taken code, then for the cap: no key, member or schedule entry of r-2 appears.
    expect(await create('r-2', 'c0ffee')).toEqual({ status: 'code_taken' });
    expect(await create('r-2', 'beef', 1)).toEqual({ status: 'limit' });
    expect(await keysOf(redis, prefix)).toEqual(before);
    expect(await redis.zrange(`${prefix}sched`, '0', '-1')).toEqual(sched);
    expect(await redis.zrange(`${prefix}d:{tv-1}`, '0', '-1')).toEqual(live);
    expect(await redis.get(`${prefix}uc:c0ffee`)).toBe('tv-1/r-1');
  });

  it('refuses a key prefix with braces (the device id must be the only hash tag)', () => {
    expect(() => new RedisStore({ redis, keyPrefix: '{dg}:', codec })).toThrow(/must not contain/);
    prefix = 'unused:';
  });

  it("TTLs are relative to the caller's now (a clock years ahead of Redis still keeps the flow), and update keeps them", async () => {
    freshStore(30_000);
    const now = Date.now() + 5 * 365 * 24 * 3_600_000;
    const flow = pendingFlow('tv-1', 'r-1', now, { expiresAt: now + 60_000 });
    await store.create(flow, { now, maxLive: 5 });
    const key = `${prefix}f:{tv-1}:r-1`;
    const ttl = await redis.pttl(key);
    // expiresAt + grace − now = 90 s, minus the little time that passed since.
    expect(ttl).toBeGreaterThan(60_000);
    expect(ttl).toBeLessThanOrEqual(90_000);
    const liveTtl = await redis.pttl(`${prefix}d:{tv-1}`);
    expect(liveTtl).toBeGreaterThan(30_000);
    expect(liveTtl).toBeLessThanOrEqual(60_001);

    await store.acquireLease('tv-1', 'r-1', 'A', now, 30_000);
    expect(await store.update({ ...flow, interval: 10 }, 1, { now, leaseToken: 'A' })).toEqual({
      status: 'ok',
      version: 2,
    });
    const after = await redis.pttl(key);
    expect(after).toBeGreaterThan(60_000);
    expect(after).toBeLessThanOrEqual(ttl);
    expect((await store.get('tv-1', 'r-1'))?.flow.interval).toBe(10);
  });

  it('a flow created already past expiresAt leaves no key behind (none without a TTL)', async () => {
    freshStore(200);
    const now = Date.now();
    const stale = pendingFlow('tv-1', 'r-1', now - 120_000, { expiresAt: now - 60_000 });
    expect((await store.create(stale, { now, maxLive: 5 })).status).toBe('created');
    expect(await keysOf(redis, prefix)).toEqual([]);
  });

  it('a finished flow leaves the device live set, and an emptied set is deleted', async () => {
    freshStore();
    const now = Date.now();
    const flow = pendingFlow('tv-1', 'r-1', now);
    await store.create(flow, { now, maxLive: 5 });
    expect(await redis.exists(`${prefix}d:{tv-1}`)).toBe(1);
    await store.update({ ...flow, state: 'cancelled' }, 1, { now });
    expect(await redis.exists(`${prefix}d:{tv-1}`)).toBe(0);
  });

  it('a Redis dump of every key holds no plaintext user code, token, device code or PKCE verifier', async () => {
    freshStore();
    const now = Date.now();
    const canaries = {
      userCode: 'WXYZ-QRST',
      deviceCode: 'canary-device-code-4f1d8e',
      codeVerifier: 'canary-verifier-9a7b3c',
      nonce: 'canary-nonce-2e6d',
      accessToken: 'canary-access-token-71c0',
      refreshToken: 'canary-refresh-token-55aa',
      idToken: 'canary-id-token-d00d',
    };
    const flow: Flow = {
      ...pendingFlow('tv-123456', 'r-1700000000', now),
      mode: 'device',
      verificationUri: 'https://idp.example/device',
      secrets: { userCode: canaries.userCode, deviceCode: canaries.deviceCode },
    };
    const codeHash = keys.lookupHash('user_code', 'WXYZQRST');
    await store.create(flow, {
      now,
      maxLive: 5,
      due: now + 5000,
      userCode: { hash: codeHash, ttlMs: 60_000 },
    });
    await store.acquireLease(flow.deviceId, flow.rid, 'lease-token-1', now, 30_000);
    const authorized: Flow = {
      ...flow,
      state: 'authorized',
      secrets: {
        ...flow.secrets,
        token: {
          access_token: canaries.accessToken,
          token_type: 'Bearer',
          refresh_token: canaries.refreshToken,
          id_token: canaries.idToken,
        },
      },
    };
    expect((await store.update(authorized, 1, { now, leaseToken: 'lease-token-1' })).status).toBe('ok');
    // A second, pending (approved) bridge flow so the dump also has a live set and PKCE secrets.
    const approved = pendingFlow('tv-123456', 'r-2', now, {
      approvedAt: now,
      secrets: { userCode: canaries.userCode, codeVerifier: canaries.codeVerifier, nonce: canaries.nonce },
    });
    await store.create(approved, { now, maxLive: 5 });

    const dump: string[] = [];
    for (const key of await keysOf(redis, prefix)) {
      dump.push(key);
      const type = await redis.type(key);
      if (type === 'hash') dump.push(...Object.entries(await redis.hgetall(key)).flat());
      else if (type === 'string') dump.push((await redis.get(key)) ?? '');
      else if (type === 'zset') dump.push(...(await redis.zrange(key, '0', '-1', 'WITHSCORES')));
      else throw new Error(`unexpected key type ${type} for ${key}`);
    }
    const text = dump.join('\n');
    // The dump is real: it shows the flows' public parts.
    expect(text).toContain('tv-123456/r-1700000000');
    expect(text).toContain('authorized');
    expect(text).toContain(codeHash);
    for (const secret of [...Object.values(canaries), 'WXYZQRST']) expect(text).not.toContain(secret);
    // And the secrets are still there, sealed.
    expect((await store.get(flow.deviceId, flow.rid))?.flow).toEqual(authorized);
    expect((await store.get(approved.deviceId, approved.rid))?.flow).toEqual(approved);
  });

  it('scripts are reloaded after SCRIPT FLUSH (NOSCRIPT falls back to EVAL)', async () => {
    freshStore();
    const now = Date.now();
    const flow = pendingFlow('tv-1', 'r-1', now);
    await store.create(flow, { now, maxLive: 5 });
    await redis.script('FLUSH');
    expect(await store.update({ ...flow, state: 'denied' }, 1, { now })).toEqual({
      status: 'ok',
      version: 2,
    });
    expect(await store.acquireLease('tv-1', 'r-1', 'A', now, 1000)).toBe(true);
  });
});

describe('redis store while Redis is down', () => {
  let client: Redis;
  let store: RedisStore;
  let stopped = false;

  beforeAll(() => {
    client = newClient();
    store = new RedisStore({ redis: client, keyPrefix: 'down:', codec });
  });

  afterAll(async () => {
    // The shared client of the other suites must see a running server again.
    if (stopped) await server.restart();
    client.disconnect();
  });

  it('calls fail with UnavailableError instead of hanging, and the store recovers after a restart', async () => {
    const now = Date.now();
    const flow = pendingFlow('tv-1', 'r-1', now);
    await store.ping();
    expect((await store.create(flow, { now, maxLive: 5, due: now })).status).toBe('created');

    stopped = true;
    await server.stop();
    // Fails fast: the client options bound every call (commandTimeout, one retry); vitest's timeout is the backstop.
    await expect(store.ping()).rejects.toBeInstanceOf(UnavailableError);
    const calls: Array<[string, () => Promise<unknown>]> = [
      ['get', () => store.get('tv-1', 'r-1')],
      ['update', () => store.update({ ...flow, state: 'denied' }, 1, { now })],
      ['claimDue', () => store.claimDue(now, 1000, 10)],
      ['create', () => store.create(pendingFlow('tv-1', 'r-2', now), { now, maxLive: 5 })],
    ];
    const outcomes = await Promise.allSettled(calls.map(([, call]) => call()));
    expect(
      outcomes.map((o, i) => [calls[i]![0], o.status === 'rejected' && o.reason instanceof UnavailableError]),
    ).toEqual(calls.map(([name]) => [name, true]));

    // Same client, no restart of the gateway: ioredis reconnects. The server ran without persistence, so the
    // flows are gone (documented), and the server's script cache is empty (EVALSHA → NOSCRIPT → EVAL).
    await server.restart();
    stopped = false;
    await waitFor(
      () =>
        store.ping().then(
          () => true,
          () => false,
        ),
      15_000,
      'the store to answer PING again',
    );
    expect(await store.get('tv-1', 'r-1')).toBeUndefined();
    const later = Date.now();
    expect(await store.create(pendingFlow('tv-1', 'r-1', later), { now: later, maxLive: 5 })).toEqual({
      status: 'created',
      version: 1,
    });
    expect(await store.acquireLease('tv-1', 'r-1', 'A', later, 1000)).toBe(true);
    await deleteKeys(client, 'down:');
  }, 30_000);
});
