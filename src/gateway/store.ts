/**
 * The flow store the config asks for: Redis (shared by every instance) or memory (one instance), and the time the
 * gateway runs on. Opening connects nothing: the Redis client is lazy and connects on the first command, which
 * `start()` sends (the eviction check and the first clock sample) before any other part starts.
 */
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Config } from '../config/index.ts';
import { type Clock, systemTimers } from '../core/clock.ts';
import { MemoryAttemptCounter } from '../store/memory-attempts.ts';
import { MemoryStore } from '../store/memory.ts';
import { RedisAttemptCounter } from '../store/redis/attempts.ts';
import { ServerClock, redisTime } from '../store/redis/clock.ts';
import { evictionPolicy } from '../store/redis/eviction.ts';
import { InstanceRegistry } from '../store/redis/instances.ts';
import { RedisStore } from '../store/redis/index.ts';
import type { AttemptCounter, FlowCodec, FlowStore } from '../store/types.ts';

export interface OpenedStore {
  store: FlowStore;
  /** the failed code-entry counters beside the flows: shared by every instance on Redis, per instance in memory */
  attempts: AttemptCounter;
  /**
   * The gateway's time, for every part: on Redis the server's clock (src/store/redis/clock.ts), so instances whose
   * hosts disagree still agree on leases, schedules and expiry; in memory the local clock.
   */
  clock: Clock;
  /**
   * Redis: checks the eviction policy, takes the first clock sample and, with an external broker, registers the
   * instance. Rejects when Redis cannot be reached, in production when the policy is not `noeviction`, and when this
   * instance would share a plain MQTT subscription with another. Memory: nothing to do (one instance anyway).
   */
  start(): Promise<void>;
  /** stops the clock's resync, closes the store and the client if it was opened here (a borrowed one stays open) */
  close(): Promise<void>;
}

export interface StoreDeps {
  config: Config;
  codec: FlowCodec;
  /** the host's clock */
  clock: Clock;
  log: Logger;
  /** a Redis client to borrow instead of opening one from the config */
  redis?: Redis | undefined;
}

export function openStore({ config, codec, clock, log, redis: borrowed }: StoreDeps): OpenedStore {
  if (config.redis === undefined) {
    const store = new MemoryStore({ codec, clock });
    return {
      store,
      attempts: new MemoryAttemptCounter(clock),
      clock,
      start: async () => {},
      close: () => store.close(),
    };
  }
  const redis = borrowed ?? openRedisClient(config.redis);
  if (borrowed === undefined) reportOutages(redis, log);
  const store = new RedisStore({ redis, keyPrefix: config.redis.keyPrefix, codec });
  // a plain subscription must not be shared: instances on an external broker register (src/store/redis/instances.ts)
  const instances =
    config.mqtt.kind === 'external'
      ? new InstanceRegistry({
          redis,
          keyPrefix: config.redis.keyPrefix,
          kind: config.mqtt.sharedSubscription ? 'shared' : 'plain',
          timers: systemTimers,
          log,
        })
      : undefined;
  const serverClock = new ServerClock({
    local: clock,
    timers: systemTimers,
    serverTime: () => redisTime(redis),
    log,
  });
  return {
    store,
    attempts: new RedisAttemptCounter({ redis, keyPrefix: config.redis.keyPrefix }),
    clock: serverClock,
    async start() {
      await checkEvictionPolicy(redis, config.production, log);
      await serverClock.start();
      await instances?.start();
    },
    async close() {
      await instances?.stop();
      serverClock.stop();
      await store.close();
      if (borrowed === undefined) redis.disconnect();
    },
  };
}

/** A lazy client on the URL, or on the master the sentinels name. */
export function openRedisClient(target: NonNullable<Config['redis']>): Redis {
  const options = { ...RedisStore.clientOptions(), lazyConnect: true };
  const s = target.sentinel;
  if (s === undefined) return new Redis(target.url, options);
  return new Redis({
    ...options,
    sentinels: s.sentinels.map((x) => ({ host: x.host, port: x.port })),
    name: s.name,
    ...(s.username !== undefined && { username: s.username }),
    ...(s.password !== undefined && { password: s.password }),
  });
}

/** Refuses an evicting Redis in production and warns about one elsewhere (src/store/redis/eviction.ts says why). */
async function checkEvictionPolicy(redis: Redis, production: boolean, log: Logger): Promise<void> {
  const policy = await evictionPolicy(redis);
  if (policy === undefined) {
    log.warn(
      'could not check the Redis maxmemory-policy (CONFIG GET is not allowed); make sure it is noeviction: an evicting Redis silently drops flows',
    );
    return;
  }
  if (policy === 'noeviction') return;
  const problem = `Redis maxmemory-policy is ${policy}: an evicting Redis silently drops flows, leases and schedules; set maxmemory-policy noeviction`;
  if (production) throw new Error(`${problem} (refused in production)`);
  log.warn({ maxmemoryPolicy: policy }, problem);
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
