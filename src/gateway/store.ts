/**
 * The flow store the config asks for: Redis (shared by every instance) or memory (one instance). Opening connects
 * nothing: the Redis client is lazy and connects on the first command, which the scheduler sends at start.
 */
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from '../config/index.ts';
import type { Clock } from '../core/clock.ts';
import { MemoryAttemptCounter } from '../store/memory-attempts.ts';
import { MemoryStore } from '../store/memory.ts';
import { RedisAttemptCounter } from '../store/redis/attempts.ts';
import { RedisStore } from '../store/redis/index.ts';
import type { AttemptCounter, FlowCodec, FlowStore } from '../store/types.ts';

export interface OpenedStore {
  store: FlowStore;
  /** the failed code-entry counters beside the flows: shared by every instance on Redis, per instance in memory */
  attempts: AttemptCounter;
  /** closes the store and the client if it was opened here (a borrowed client stays open) */
  close(): Promise<void>;
}

export interface StoreDeps {
  config: Config;
  codec: FlowCodec;
  clock: Clock;
  log: Logger;
  /** a Redis client to borrow instead of opening one from the config */
  redis?: Redis | undefined;
}

export function openStore({ config, codec, clock, log, redis: borrowed }: StoreDeps): OpenedStore {
  if (config.redis === undefined) {
    const store = new MemoryStore({ codec, clock });
    return { store, attempts: new MemoryAttemptCounter(clock), close: () => store.close() };
  }
  const redis = borrowed ?? new Redis(config.redis.url, { ...RedisStore.clientOptions(), lazyConnect: true });
  if (borrowed === undefined) reportOutages(redis, log);
  const store = new RedisStore({ redis, keyPrefix: config.redis.keyPrefix, codec });
  return {
    store,
    attempts: new RedisAttemptCounter({ redis, keyPrefix: config.redis.keyPrefix }),
    async close() {
      await store.close();
      if (borrowed === undefined) redis.disconnect();
    },
  };
}

/**
 * Without a listener ioredis prints every failed reconnect to stderr, outside the JSON log. Logs the first failure of
 * an outage and the recovery; calls in between fail with `UnavailableError` and are logged where they fail.
 */
function reportOutages(redis: Redis, log: Logger): void {
  let down = false;
  redis.on('error', (err: Error) => {
    if (down) return;
    down = true;
    log.warn({ err }, 'redis connection failed; reconnecting');
  });
  redis.on('ready', () => {
    if (!down) return;
    down = false;
    log.info('redis connection restored');
  });
}
