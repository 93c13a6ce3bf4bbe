/**
 * The attempt counters of one instance (./types.ts `AttemptCounter`): right with the in-memory store, which serves
 * one instance only. Expiry runs on the injected clock.
 */
import type { Clock } from '../core/clock.ts';
import type { AttemptCounter } from './types.ts';

/** Above this many entries, an add first drops the expired ones. */
const PRUNE_ABOVE = 1024;

export class MemoryAttemptCounter implements AttemptCounter {
  readonly #clock: Clock;
  readonly #counts = new Map<string, { count: number; until: number }>();

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** Counters held, expired ones included until more than 1024 are held (then an add drops the expired ones). */
  get size(): number {
    return this.#counts.size;
  }

  async add(key: string, by: 1 | -1, ttlMs: number): Promise<number> {
    const now = this.#clock.now();
    const entry = this.#counts.get(key);
    const count = (entry !== undefined && entry.until > now ? entry.count : 0) + by;
    if (count <= 0) this.#counts.delete(key);
    else this.#counts.set(key, { count, until: now + ttlMs });
    if (this.#counts.size > PRUNE_ABOVE) this.#prune(now);
    return count;
  }

  /** Entries only exist for failures (bounded by the global limit) and attempts in flight, so this stays small. */
  #prune(now: number): void {
    for (const [key, e] of this.#counts) if (e.until <= now) this.#counts.delete(key);
  }
}
