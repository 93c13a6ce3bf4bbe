/**
 * Sends the Redis commands issued in one turn of the event loop (the continuations of a batch of replies, of a batch
 * of device requests) as one ioredis pipeline, so they leave in one socket write instead of one write each. The
 * pipeline is sent on `process.nextTick`, before the event loop turns: nothing waits for a later turn, and commands
 * keep their order. Each command still succeeds or fails on its own (its own reply, error and `commandTimeout`).
 *
 * Why: one write per command costs about 30–40 % more client CPU per `RedisStore.create` when many run at once
 * (50 concurrent creates, `process.cpuUsage`, same process, alternating versions); with this batching the cost is
 * within about 10 % of corking ioredis' socket, which reached into the client's internals.
 */
import type { Callback, ChainableCommander, Redis } from 'ioredis';

export class TurnPipeline {
  readonly #redis: Redis;
  #open: ChainableCommander | undefined;

  constructor(redis: Redis) {
    this.#redis = redis;
  }

  /**
   * Queues one command on this turn's pipeline: `queue` adds it to `p` with `done` as its callback. Resolves with the
   * command's reply, rejects with its error.
   */
  send<T>(queue: (p: ChainableCommander, done: Callback<T>) => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      queue(this.#pipeline(), (err, reply) => {
        if (err) reject(err);
        else resolve(reply as T);
      });
    });
  }

  #pipeline(): ChainableCommander {
    if (this.#open !== undefined) return this.#open;
    const p = this.#redis.pipeline();
    this.#open = p;
    process.nextTick(() => {
      this.#open = undefined;
      // Every command's outcome reaches its own callback; the batch's summary is not needed.
      p.exec().catch(() => undefined);
    });
    return p;
  }
}
