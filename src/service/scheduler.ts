/**
 * The scheduler visits flows when they are due: relay-mode polls, deliveries that have not been confirmed, and
 * expiries that must be pushed to the device. Due times live in the store (a Redis sorted set), not in per-flow
 * timers, so a restarted or another instance picks up where one stopped. Each visit holds the flow's lease: exactly
 * one instance polls a flow at a time, and only the lease holder writes and publishes the result.
 *
 * Leases and failures:
 * - a visit renews its lease while it runs (every third of the lease), so a poll slower than the lease is not
 *   repeated by another instance — a second redemption attempt of a device_code makes many servers revoke the
 *   tokens already issued for it (RFC 6749 §4.1.2 style replay detection; node-oidc-provider does);
 * - a visit that finds its lease past its local deadline (the process was paused: SIGSTOP, a VM freeze, a long GC)
 *   gives up before calling the upstream; the store refuses its writes anyway (`lease_lost`);
 * - an instance that finds a flow's lease held by another looks again soon (a quarter of the lease, at most 1 s)
 *   instead of a whole lease later, so a dead holder's flow is taken over right after its lease runs out.
 */
import type { Logger } from 'pino';
import type { Clock } from '../core/clock.ts';
import { type PollOutcome, apply, dueAt } from '../core/engine.ts';
import type { FlowStore } from '../store/types.ts';
import type { RelayUpstream, Upstream } from '../upstream/types.ts';
import { type FlowUpdater, newLeaseToken } from './updater.ts';
import { describe } from '../observability/log.ts';
import type { Metrics } from '../observability/metrics.ts';

export interface SchedulerOptions {
  store: FlowStore;
  service: FlowUpdater;
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

/** A lease this instance holds during one visit. */
interface Hold {
  deviceId: string;
  rid: string;
  token: string;
  /** local deadline: the lease is surely ours until then (taken or renewed at a time measured before the call) */
  until: number;
  /** renewal failed or came too late: another instance may hold the flow now */
  lost: boolean;
  timer: NodeJS.Timeout | undefined;
  renewing: Promise<void> | undefined;
}

export class Scheduler {
  readonly #o: Required<SchedulerOptions>;
  #running = false;
  #timer: NodeJS.Timeout | undefined;
  #wake: (() => void) | undefined;
  #loop: Promise<void> | undefined;
  readonly #inFlight = new Set<Promise<void>>();
  /** Leases this instance holds right now, released on close. */
  readonly #held = new Map<string, Hold>();

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
    const token = newLeaseToken();
    const key = `${deviceId}/${rid}`;
    let hold: Hold | undefined;
    try {
      const asked = clock.now();
      if (!(await store.acquireLease(deviceId, rid, token, asked, leaseMs))) {
        // Another instance holds the flow (or it is gone). Look again soon: should the holder have died, its flow
        // is taken over right after the lease runs out, not a whole lease after this claim.
        const current = await store.get(deviceId, rid);
        const now = clock.now();
        const due = current === undefined ? undefined : dueAt(current.flow, now, leaseMs);
        await store.schedule(
          deviceId,
          rid,
          due === undefined ? undefined : Math.min(due, now + this.#retryMs),
        );
        return;
      }
      hold = this.#hold(deviceId, rid, token, asked);
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
        flow.mode === 'device' &&
        flow.state === 'pending' &&
        flow.nextPollAt !== undefined &&
        flow.nextPollAt <= now &&
        flow.secrets.deviceCode !== undefined
      ) {
        // Paused past the lease (the deadline is local, so this holds whatever the timers did meanwhile): another
        // instance may be polling this device_code right now. Never send it twice.
        if (hold.lost || clock.now() >= hold.until) return;
        const outcome = await this.#poll(upstream, flow.secrets.deviceCode);
        await service.update({
          deviceId,
          rid,
          event: { type: 'poll', outcome },
          leaseToken: token,
          known: current,
        });
        return;
      }
      // Expiry, a delivery not yet confirmed, or nothing to do but refresh the due time.
      const r = await service.update({
        deviceId,
        rid,
        event: { type: 'tick' },
        leaseToken: token,
        known: current,
      });
      if (r.status === 'ok' && !r.transition.changed && !r.transition.notify) {
        await service.reschedule(r.transition.flow);
      }
    } catch (err) {
      log.warn({ deviceId, rid, err: describe(err) }, 'scheduler: visit failed; retried after the lease');
    } finally {
      if (hold !== undefined) await this.#release(key, hold);
    }
  }

  /** How soon to look again at a flow whose lease another instance holds. */
  get #retryMs(): number {
    return Math.max(50, Math.min(this.#o.leaseMs / 4, 1000));
  }

  /** Records a lease just taken (asked for at `asked`) and renews it every third of the lease while the visit runs. */
  #hold(deviceId: string, rid: string, token: string, asked: number): Hold {
    const { store, clock, leaseMs } = this.#o;
    const hold: Hold = {
      deviceId,
      rid,
      token,
      until: asked + leaseMs,
      lost: false,
      timer: undefined,
      renewing: undefined,
    };
    hold.timer = setInterval(
      () => {
        if (hold.lost || hold.renewing !== undefined) return;
        const now = clock.now();
        if (now >= hold.until) {
          // paused past the deadline: the lease may be another instance's by now; renewing could take it back
          hold.lost = true;
          clearInterval(hold.timer);
          return;
        }
        hold.renewing = store
          .acquireLease(deviceId, rid, token, now, leaseMs)
          .then(
            (ok) => {
              if (ok) hold.until = now + leaseMs;
              else hold.lost = true;
            },
            () => undefined, // the store is unreachable: the old deadline stands
          )
          .finally(() => {
            hold.renewing = undefined;
          });
      },
      Math.max(1, Math.floor(leaseMs / 3)),
    );
    hold.timer.unref();
    this.#held.set(`${deviceId}/${rid}`, hold);
    return hold;
  }

  /** Stops renewing, then gives the lease back (after any renewal in flight, which would otherwise re-take it). */
  async #release(key: string, hold: Hold): Promise<void> {
    clearInterval(hold.timer);
    hold.lost = true;
    await hold.renewing;
    if (this.#held.get(key) === hold) this.#held.delete(key);
    await this.#o.store.releaseLease(hold.deviceId, hold.rid, hold.token).catch(() => undefined);
  }

  async #poll(upstream: RelayUpstream, deviceCode: string): Promise<PollOutcome> {
    const outcome = await upstream.pollDeviceToken(deviceCode);
    this.#o.metrics.inc('devicegate_upstream_polls_total', { outcome: outcome.kind });
    return outcome;
  }
}
