/**
 * The only sources of time: a {@link Clock} (ms since the epoch) for the engine, the stores and the scheduler, and
 * {@link Timers} for everything that waits (scheduler sleeps, lease renewal, discovery retries). Both are injected,
 * so tests drive them with a fake (test/helpers/clock.ts) and never sleep.
 */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };

/** An opaque handle of a timer started through {@link Timers}. */
export interface TimerHandle {
  /** Lets the process exit while the timer is pending (Node's `unref`); a no-op for fake timers. */
  unref(): void;
}

/** Timers as a port: the Node.js global timers in production, a fake in unit tests. */
export interface Timers {
  setTimeout(fn: () => void, ms: number): TimerHandle;
  setInterval(fn: () => void, ms: number): TimerHandle;
  /** Stops a timeout or an interval; `undefined` and an already stopped timer are fine. */
  clear(handle: TimerHandle | undefined): void;
}

export const systemTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clear: (handle) => {
    if (handle !== undefined) clearTimeout(handle as NodeJS.Timeout);
  },
};
