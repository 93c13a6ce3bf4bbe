/**
 * Attempt counters (../types.ts `AttemptCounter`) in Redis, so the code-entry limits hold across every instance on
 * one Redis. Keys: `<p>page:<key>` strings (`<p>` is the configured prefix), each expiring `ttlMs` after its last
 * change. Each change is one MULTI of single-key commands (INCRBY + PEXPIRE): atomic without a
 * script. Every failure surfaces as {@link UnavailableError}.
 */
import type { Redis } from 'ioredis';
import { UnavailableError } from '../../core/errors.ts';
import type { AttemptCounter } from '../types.ts';

export interface RedisAttemptCounterOptions {
  /** Borrowed, never closed; best opened with `RedisStore.clientOptions()` so a call fails fast while Redis is down. */
  redis: Redis;
  /** The deployment's key prefix (the store's, e.g. `devicegate:`). */
  keyPrefix: string;
}

export class RedisAttemptCounter implements AttemptCounter {
  readonly #redis: Redis;
  readonly #prefix: string;

  constructor(options: RedisAttemptCounterOptions) {
    this.#redis = options.redis;
    this.#prefix = `${options.keyPrefix}page:`;
  }

  async add(key: string, by: 1 | -1, ttlMs: number): Promise<number> {
    const k = this.#prefix + key;
    let results: Array<[Error | null, unknown]> | null;
    try {
      results = await this.#redis.multi().incrby(k, by).pexpire(k, ttlMs).exec();
    } catch (err) {
      throw new UnavailableError('store', 'the attempt counter failed', { cause: err });
    }
    const first = results?.[0];
    if (first === undefined || first[0] !== null || typeof first[1] !== 'number') {
      throw new UnavailableError('store', 'the attempt counter failed', { cause: first?.[0] });
    }
    return first[1];
  }
}
