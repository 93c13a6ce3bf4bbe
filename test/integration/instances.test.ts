/**
 * The instance registry on a real Redis (src/store/redis/instances.ts), its heartbeat on fake timers: the key is
 * refreshed before its TTL runs out, a failed refresh is logged and retried at the next beat, and `stop()` removes
 * the key and the timer. (That a second instance refuses to start is in brokers.test.ts, through `buildGateway`.)
 */
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createLogger } from '../../src/observability/log.ts';
import { INSTANCE_TTL_MS, InstanceRegistry } from '../../src/store/redis/instances.ts';
import { RedisStore } from '../../src/store/redis/index.ts';
import { FakeTime } from '../helpers/clock.ts';
import { type ManagedProcess, startRedis, stopAll, waitFor } from '../helpers/procs.ts';

let server: ManagedProcess;

beforeAll(async () => {
  server = await startRedis();
});

afterAll(stopAll);

async function registered(redis: Redis): Promise<string[]> {
  const [, keys] = await redis.scan('0', 'MATCH', 'dg-test:mqtt-instance:*', 'COUNT', 100);
  return keys;
}

it('keeps its key alive on the Timers port, logs a failed beat, and removes key and timer on stop', async () => {
  const time = new FakeTime();
  const lines: Array<{ msg?: string }> = [];
  const log = createLogger('info', { write: (line: string) => void lines.push(JSON.parse(line)) });
  const redis = new Redis(server.url, RedisStore.clientOptions());
  const registry = new InstanceRegistry({ redis, keyPrefix: 'dg-test:', kind: 'plain', timers: time, log });
  await registry.start();
  const [key] = await registered(redis);
  expect(key).toBeDefined();
  expect(await redis.get(key ?? '')).toBe('plain');

  // nearly expired; the next beat (a third of the TTL) sets the full TTL again
  await redis.pexpire(key ?? '', 1000);
  await time.tick(INSTANCE_TTL_MS / 3);
  await waitFor(
    async () => (await redis.pttl(key ?? '')) > INSTANCE_TTL_MS - 2000,
    2000,
    'the refreshed TTL',
  );

  const watcher = new Redis(server.url, RedisStore.clientOptions());
  redis.disconnect();
  await time.tick(INSTANCE_TTL_MS / 3);
  await waitFor(() => lines.some((l) => l.msg === 'instance heartbeat failed'), 2000, 'the logged failure');

  await redis.connect();
  await registry.stop();
  expect(time.pending).toBe(0);
  expect(await registered(watcher)).toEqual([]);
  redis.disconnect();
  watcher.disconnect();
});
