/**
 * One time for every instance on a Redis: the Redis server's clock. Leases, schedules and expiry are compared across
 * instances (a flow scheduled by one is claimed by another; a lease taken by one is checked by another), so the
 * instances must agree on the time even when their hosts do not: with one host 15 s ahead, a poll scheduled 5 s out by
 * another instance was due at once on it.
 *
 * {@link ServerClock} keeps an offset between the local clock and the server's and applies it synchronously, so
 * `now()` stays a plain read. The offset is sampled at start and again every {@link RESYNC_MS} on the `Timers` port
 * (a host clock may be stepped at any time). A sample reads the server's time at the midpoint of its round trip, so
 * its error is at most half the round trip; each sampling takes {@link BURST} samples back to back and keeps the one
 * with the shortest round trip, because a loaded event loop or a busy pipeline stretches one leg of a trip, and two
 * instances' errors add up where they compare times (one schedules a poll an interval out, the other sends it).
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Clock, TimerHandle, Timers } from '../../core/clock.ts';

/** How often the offset is sampled again after the start. */
export const RESYNC_MS = 10_000;

/** Samples per sampling; the one with the shortest round trip counts. */
export const BURST = 5;

/**
 * How much an offset in use may have drifted between two samplings (ms per {@link RESYNC_MS}: 100 ppm, ten times
 * what a quartz oscillator drifts), so that an old tight estimate eventually yields to a fresh one.
 */
export const DRIFT_MS = 1;

export interface ServerClockDeps {
  /** the host's clock (tests skew it) */
  local: Clock;
  timers: Timers;
  /** the server's time in ms since the epoch, one round trip */
  serverTime: () => Promise<number>;
  log: Logger;
}

/** The server's time as a {@link Clock}: the local clock plus the last sampled offset. */
export class ServerClock implements Clock {
  readonly #d: ServerClockDeps;
  #offset = 0;
  /** half the round trip of the sample the offset came from (plus drift since): the most it can be off by */
  #uncertainty = 0;
  #sampled = false;
  #timer: TimerHandle | undefined;
  /** a resync failed and was logged; the next failure stays quiet until one succeeds */
  #failing = false;

  constructor(deps: ServerClockDeps) {
    this.#d = deps;
  }

  now(): number {
    return this.#d.local.now() + this.#offset;
  }

  /** The server time minus the local time, as last sampled (ms). */
  get offsetMs(): number {
    return this.#offset;
  }

  /**
   * Samples the offset once (rejecting when the server cannot be reached: the gateway must not start on a time the
   * other instances do not share) and then keeps it fresh every {@link RESYNC_MS}. A failed resync keeps the last
   * offset and is logged once per outage.
   */
  async start(): Promise<void> {
    await this.#sample();
    this.#d.log.info(
      { offsetMs: this.#offset, uncertaintyMs: this.#uncertainty },
      'clock: using the Redis server time',
    );
    this.#timer = this.#d.timers.setInterval(() => void this.#resync(), RESYNC_MS);
    this.#timer.unref();
  }

  /** Stops the resync timer. */
  stop(): void {
    this.#d.timers.clear(this.#timer);
    this.#timer = undefined;
  }

  async #resync(): Promise<void> {
    try {
      await this.#sample();
      if (this.#failing)
        this.#d.log.info({ offsetMs: this.#offset }, 'clock: Redis server time sampled again');
      this.#failing = false;
    } catch (err) {
      // a sample still in flight when the gateway closed its client: nothing to report
      if (this.#timer === undefined) return;
      if (!this.#failing)
        this.#d.log.warn({ err }, 'clock: could not sample the Redis server time; keeping the last offset');
      this.#failing = true;
    }
  }

  async #sample(): Promise<void> {
    let best: Sample | undefined;
    for (let i = 0; i < BURST; i++) {
      const sent = this.#d.local.now();
      const server = await this.#d.serverTime();
      const received = this.#d.local.now();
      const sample = {
        // The server read its clock somewhere in the round trip; the midpoint is the best guess.
        offset: Math.round(server - (sent + received) / 2),
        uncertainty: (received - sent) / 2,
        // the true offset lies between these (widened by a millisecond for the local clock's resolution)
        low: server - received - 1,
        high: server - sent + 1,
      };
      if (best === undefined || sample.uncertainty < best.uncertainty) best = sample;
    }
    if (best !== undefined) this.#adopt(best);
  }

  /**
   * Takes the sample's offset unless the one in use is better and still agrees with it: a resync during a busy moment
   * must not replace a tight estimate with a loose one. The estimate in use loses {@link DRIFT_MS} of credit each
   * time it is kept, and is replaced at once when the sample's bounds exclude it (the host clock was stepped).
   */
  #adopt(sample: Sample): void {
    const aged = this.#uncertainty + DRIFT_MS;
    const agrees = this.#offset >= sample.low && this.#offset <= sample.high;
    if (this.#sampled && agrees && aged < sample.uncertainty) {
      this.#uncertainty = aged;
      return;
    }
    this.#offset = sample.offset;
    this.#uncertainty = sample.uncertainty;
    this.#sampled = true;
  }
}

interface Sample {
  offset: number;
  uncertainty: number;
  low: number;
  high: number;
}

/** Redis `TIME` (seconds and microseconds) in ms since the epoch. */
export async function redisTime(redis: Redis): Promise<number> {
  const [seconds, micros] = await redis.time();
  return Number(seconds) * 1000 + Number(micros) / 1000;
}
