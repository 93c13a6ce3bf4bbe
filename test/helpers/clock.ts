/**
 * Fake time for unit tests: a clock that moves only when told to, and timers that fire when the fake time passes
 * their due time (in due order, intervals re-armed), so a test of the scheduler or of lease renewal never sleeps.
 */
import type { Clock, TimerHandle, Timers } from '../../src/core/clock.ts';

/** A clock that moves only when told to. */
export class FakeClock implements Clock {
  #now: number;
  constructor(start = Date.UTC(2026, 0, 1)) {
    this.#now = start;
  }
  now(): number {
    return this.#now;
  }
  advance(ms: number): void {
    this.#now += ms;
  }
  set(ms: number): void {
    this.#now = ms;
  }
}

interface FakeTimer extends TimerHandle {
  id: number;
  due: number;
  every: number | undefined;
  fn: () => void;
}

/** A {@link FakeClock} with {@link Timers} on the same fake time. */
export class FakeTime extends FakeClock implements Timers {
  #next = 1;
  readonly #timers = new Map<number, FakeTimer>();

  setTimeout(fn: () => void, ms: number): TimerHandle {
    return this.#add(fn, ms, undefined);
  }

  setInterval(fn: () => void, ms: number): TimerHandle {
    return this.#add(fn, ms, Math.max(1, ms));
  }

  clear(handle: TimerHandle | undefined): void {
    if (handle !== undefined) this.#timers.delete((handle as FakeTimer).id);
  }

  /** Timers not yet fired or cleared. */
  get pending(): number {
    return this.#timers.size;
  }

  /**
   * Moves time forward by `ms`, firing every timer that falls due on the way (in due order, with the clock set to its
   * due time), and lets the promise continuations each one starts run before the next fires.
   */
  async tick(ms: number): Promise<void> {
    const end = this.now() + ms;
    for (;;) {
      await settle();
      const first = [...this.#timers.values()].sort((a, b) => a.due - b.due || a.id - b.id)[0];
      if (first === undefined || first.due > end) break;
      this.set(Math.max(this.now(), first.due));
      if (first.every === undefined) this.#timers.delete(first.id);
      else first.due += first.every;
      first.fn();
    }
    this.set(end);
    await settle();
  }

  #add(fn: () => void, ms: number, every: number | undefined): TimerHandle {
    const timer: FakeTimer = { id: this.#next++, due: this.now() + Math.max(0, ms), every, fn, unref() {} };
    this.#timers.set(timer.id, timer);
    return timer;
  }
}

/** Lets queued promise continuations (and the ones they queue) run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/**
 * Real time moved forward by `advance`: for suites over Redis, whose TTLs run on the server's own clock while the
 * gateway's decisions use this one.
 */
export class OffsetClock implements Clock {
  #offset = 0;
  now(): number {
    return Date.now() + this.#offset;
  }
  advance(ms: number): void {
    this.#offset += ms;
  }
}
