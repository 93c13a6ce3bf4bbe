/**
 * Gateway instances on one external broker register here, so that a plain (non-shared) subscription is never shared:
 * two instances each holding `{prefix}/+/req/+` would both receive every request and answer every device twice
 * (`DEVICEGATE_MQTT_SHARED_SUBSCRIPTION=false` is for one instance; docs/brokers.md). Each instance keeps a key of its
 * own, `{keyPrefix}mqtt-instance:{id}`, whose value is its subscription kind, with a TTL it refreshes on the `Timers`
 * port; a dead instance's key expires by itself. Registering first and looking second means that of two instances
 * starting at once, at least one sees the other.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { TimerHandle, Timers } from '../../core/clock.ts';

/** An instance's key lives this long without a heartbeat. */
export const INSTANCE_TTL_MS = 15_000;
const HEARTBEAT_MS = INSTANCE_TTL_MS / 3;

export type SubscriptionKind = 'shared' | 'plain';

export class InstanceRegistry {
  readonly #redis: Redis;
  readonly #key: string;
  readonly #pattern: string;
  readonly #kind: SubscriptionKind;
  readonly #timers: Timers;
  readonly #log: Logger;
  #heartbeat: TimerHandle | undefined;

  constructor(o: { redis: Redis; keyPrefix: string; kind: SubscriptionKind; timers: Timers; log: Logger }) {
    this.#redis = o.redis;
    this.#pattern = `${o.keyPrefix}mqtt-instance:*`;
    this.#key = `${o.keyPrefix}mqtt-instance:${randomBytes(8).toString('hex')}`;
    this.#kind = o.kind;
    this.#timers = o.timers;
    this.#log = o.log;
  }

  /**
   * Registers this instance and starts its heartbeat. Rejects (and unregisters) when this instance would share a
   * plain subscription: it is plain and another instance is registered, or another registered instance is plain.
   */
  async start(): Promise<void> {
    await this.#redis.set(this.#key, this.#kind, 'PX', INSTANCE_TTL_MS);
    const others = await this.#others();
    const conflict = this.#kind === 'plain' ? others.length > 0 : others.includes('plain');
    if (conflict) {
      await this.#redis.del(this.#key);
      throw new Error(
        this.#kind === 'plain'
          ? 'another devicegate instance is running on this Redis: DEVICEGATE_MQTT_SHARED_SUBSCRIPTION=false allows one instance only (each would receive and answer every request); stop the other instance or use a broker with shared subscriptions'
          : 'a devicegate instance with DEVICEGATE_MQTT_SHARED_SUBSCRIPTION=false is running on this Redis: it allows one instance only; stop it, or run every instance with shared subscriptions',
      );
    }
    this.#heartbeat = this.#timers.setInterval(() => void this.#beat(), HEARTBEAT_MS);
    this.#heartbeat.unref();
  }

  /** Stops the heartbeat and unregisters (best effort: the key expires anyway). */
  async stop(): Promise<void> {
    this.#timers.clear(this.#heartbeat);
    await this.#redis.del(this.#key).catch(() => undefined);
  }

  async #beat(): Promise<void> {
    try {
      await this.#redis.set(this.#key, this.#kind, 'PX', INSTANCE_TTL_MS);
    } catch (err) {
      this.#log.warn({ err }, 'instance heartbeat failed');
    }
  }

  /** The subscription kinds of the other live instances. */
  async #others(): Promise<string[]> {
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await this.#redis.scan(cursor, 'MATCH', this.#pattern, 'COUNT', 100);
      cursor = next;
      keys.push(...batch.filter((k) => k !== this.#key));
    } while (cursor !== '0');
    if (keys.length === 0) return [];
    const values = await this.#redis.mget(keys);
    return values.filter((v): v is string => v !== null);
  }
}
