/**
 * The scheduler visits flows when they are due: relay-mode polls, deliveries that have not been confirmed, and
 * expiries that must be pushed to the device. Due times live in the store (a Redis sorted set), not in per-flow
 * timers, so a restarted or another instance picks up where one stopped. Each visit holds the flow's lease: exactly
 * one instance polls a flow at a time, and only the lease holder writes and publishes the result.
 */
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.ts';
import { type PollOutcome, apply } from '../core/engine.ts';
import type { FlowStore } from '../store/types.ts';
import type { RelayUpstream, Upstream } from '../upstream/types.ts';
import { FlowService, describe } from './flows.ts';
import type { Metrics } from './metrics.ts';

export interface SchedulerOptions {
  store: FlowStore;
  service: FlowService;
  upstream: Upstream;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
  leaseMs: number;
  /** Longest sleep between looks at the schedule (other instances may add work). Default 250 ms. */
  maxIdleMs?: number;
  /** Flows visited at once. Default 64. */
  concurrency?: number;
}

export class Scheduler {
  readonly #o: Required<SchedulerOptions>;
  #running = false;
  #timer: NodeJS.Timeout | undefined;
  #wake: (() => void) | undefined;
  #loop: Promise<void> | undefined;
  readonly #inFlight = new Set<Promise<void>>();
  /** Leases this instance holds right now, released on close. */
  readonly #held = new Map<string, { deviceId: string; rid: string; token: string }>();

  constructor(options: SchedulerOptions) {
    this.#o = { maxIdleMs: 250, concurrency: 64, ...options };
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#loop = this.#run();
  }

  /** Look at the schedule now (e.g. after a flow was created). */
  poke(): void {
    this.#wake?.();
  }

  /** Stops taking work, waits for visits in flight, releases held leases. */
  async close(): Promise<void> {
    this.#running = false;
    this.poke();
    await this.#loop;
    await Promise.allSettled(this.#inFlight);
    await Promise.allSettled(
      [...this.#held.values()].map((h) => this.#o.store.releaseLease(h.deviceId, h.rid, h.token)),
    );
  }

  async #run(): Promise<void> {
    const { store, clock, leaseMs, concurrency, maxIdleMs, log } = this.#o;
    let errorStreak = 0;
    while (this.#running) {
      let sleep = maxIdleMs;
      try {
        const free = concurrency - this.#inFlight.size;
        if (free > 0) {
          const due = await store.claimDue(clock.now(), leaseMs, free);
          for (const f of due) this.#track(this.visit(f.deviceId, f.rid));
          if (due.length === free) sleep = 0;
        }
        if (sleep > 0) {
          const next = await store.nextDue();
          if (next !== undefined) sleep = Math.max(0, Math.min(maxIdleMs, next - clock.now()));
        }
        errorStreak = 0;
      } catch (err) {
        errorStreak += 1;
        sleep = Math.min(5000, maxIdleMs * 2 ** Math.min(errorStreak, 5));
        if (errorStreak === 1 || errorStreak % 20 === 0)
          log.warn({ err: describe(err) }, 'scheduler: store unavailable');
      }
      if (!this.#running) break;
      if (this.#inFlight.size >= concurrency) await Promise.race(this.#inFlight);
      else if (sleep > 0) await this.#sleep(sleep);
    }
  }

  #track(p: Promise<void>): void {
    this.#inFlight.add(p);
    void p.finally(() => {
      this.#inFlight.delete(p);
      if (this.#inFlight.size === this.#o.concurrency - 1) this.poke();
    });
  }

  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      this.#timer = setTimeout(resolve, ms);
      this.#wake = () => {
        clearTimeout(this.#timer);
        resolve();
      };
    }).finally(() => {
      this.#wake = undefined;
    });
  }

  /** One visit: take the lease, expire / poll / deliver as due, write with the lease, give the lease back. */
  async visit(deviceId: string, rid: string): Promise<void> {
    const { store, service, clock, leaseMs, log, upstream } = this.#o;
    const token = FlowService.leaseToken();
    const key = `${deviceId}/${rid}`;
    try {
      if (!(await store.acquireLease(deviceId, rid, token, clock.now(), leaseMs))) {
        const current = await store.get(deviceId, rid);
        if (current === undefined) await store.schedule(deviceId, rid, undefined);
        return;
      }
      this.#held.set(key, { deviceId, rid, token });
      const current = await store.get(deviceId, rid);
      if (current === undefined) {
        await store.schedule(deviceId, rid, undefined);
        return;
      }
      const now = clock.now();
      const ticked = apply(current.flow, { type: 'tick' }, now);
      const flow = ticked.flow;
      if (
        upstream.kind === 'device' &&
        flow.state === 'pending' &&
        flow.nextPollAt !== undefined &&
        flow.nextPollAt <= now &&
        flow.secrets.deviceCode !== undefined
      ) {
        const outcome = await this.#poll(upstream, flow.secrets.deviceCode);
        await service.mutate(deviceId, rid, { type: 'poll', outcome }, token, current);
        return;
      }
      // Expiry, a delivery not yet confirmed, or nothing to do but refresh the due time.
      const r = await service.mutate(deviceId, rid, { type: 'tick' }, token, current);
      if (r.status === 'ok' && !r.transition.changed && !r.transition.notify) {
        await service.reschedule(r.transition.flow);
      }
    } catch (err) {
      log.warn({ deviceId, rid, err: describe(err) }, 'scheduler: visit failed; retried after the lease');
    } finally {
      if (this.#held.get(key)?.token === token) {
        this.#held.delete(key);
        await store.releaseLease(deviceId, rid, token).catch(() => undefined);
      }
    }
  }

  async #poll(upstream: RelayUpstream, deviceCode: string): Promise<PollOutcome> {
    const outcome = await upstream.pollDeviceToken(deviceCode);
    this.#o.metrics.inc('devicegate_upstream_polls_total', { outcome: outcome.kind });
    return outcome;
  }
}
