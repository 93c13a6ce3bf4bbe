/**
 * The attempt counter conformance suite on the Redis counter, against a private redis-server (never the shared
 * 6379), plus what only Redis has: the key layout with its TTL, and failures as UnavailableError.
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UnavailableError } from '../../src/core/errors.ts';
import { RedisAttemptCounter } from '../../src/store/redis/attempts.ts';
import { RedisStore } from '../../src/store/redis/index.ts';
import { OffsetClock } from '../helpers/clock.ts';
import { type ManagedProcess, startRedis, stopAll } from '../helpers/procs.ts';
import { attemptCounterConformance } from './store.contract.ts';

let server: ManagedProcess;
let redis: Redis;
let prefixes = 0;

beforeAll(async () => {
  server = await startRedis();
  redis = new Redis(server.url, RedisStore.clientOptions());
  redis.on('error', () => {}); // connection errors surface as rejected calls; the events are expected here
});

afterAll(async () => {
  redis.disconnect();
  await stopAll();
});

async function deleteKeys(prefix: string): Promise<void> {
  const found = await redis.keys(`${prefix}*`);
  if (found.length > 0) await redis.del(...found);
}

attemptCounterConformance('redis', async () => {
  const keyPrefix = `a${++prefixes}:`;
  return {
    counter: new RedisAttemptCounter({ redis, keyPrefix }),
    clock: new OffsetClock(),
    cleanup: () => deleteKeys(keyPrefix),
  };
});

describe('redis attempt counter', () => {
  it('keeps each count in <prefix>page:<key> with the TTL of its last change', async () => {
    const counter = new RedisAttemptCounter({ redis, keyPrefix: 'layout:' });
    await counter.add('fail:global:123', 1, 120_000);
    expect(await redis.keys('layout:*')).toEqual(['layout:page:fail:global:123']);
    expect(await redis.get('layout:page:fail:global:123')).toBe('1');
    const ttl = await redis.pttl('layout:page:fail:global:123');
    expect(ttl).toBeGreaterThan(110_000);
    expect(ttl).toBeLessThanOrEqual(120_000);
    await deleteKeys('layout:');
  });

  it('a failed command is an UnavailableError', async () => {
    const counter = new RedisAttemptCounter({ redis, keyPrefix: 'wrong:' });
    await redis.hset('wrong:page:k', 'f', 'v');
    await expect(counter.add('k', 1, 1000)).rejects.toBeInstanceOf(UnavailableError);
    await deleteKeys('wrong:');
  });

  it('Redis down is an UnavailableError, without hanging', async () => {
    const counter = new RedisAttemptCounter({ redis, keyPrefix: 'down:' });
    await server.stop();
    await expect(counter.add('k', 1, 1000)).rejects.toBeInstanceOf(UnavailableError);
  });
});
