/**
 * The scheduler visits flows when they are due: relay-mode polls, deliveries that have not been confirmed, and
 * expiries that must be pushed to the device. Due times live in the store (a Redis sorted set), not in per-flow
 * timers, so a restarted or another instance picks up where one stopped. Each visit holds the flow's lease: exactly
 * one instance polls a flow at a time, and only the lease holder writes and publishes the result.
 *
 * Leases and failures (the lease itself: ./lease.ts):
 * - a visit renews its lease while it runs, so a poll slower than the lease is not repeated by another instance — a
 *   second redemption attempt of a device_code makes many servers revoke the tokens already issued for it
 *   (RFC 6749 §4.1.2 style replay detection; node-oidc-provider does);
 * - a visit whose lease is lost (e.g. the process was paused past it) gives up before calling the upstream; the
 *   store refuses its writes anyway (`lease_lost`);
 * - an instance that finds a flow's lease held by another looks again soon (a quarter of the lease, at most 1 s)
 *   instead of a whole lease later, so a dead holder's flow is taken over right after its lease runs out.
 */
import type { Logger } from 'pino';
import { type Clock, type TimerHandle, type Timers, systemTimers } from '../core/clock.ts';
import { type FlowEvent, type PollOutcome, apply, dueAt, isFinalPoll } from '../core/engine.ts';
import { UnavailableError } from '../core/errors.ts';
import { type FlowStore, GRACE_MS, type Versioned } from '../store/types.ts';
import type { RelayUpstream, Upstream } from '../upstream/types.ts';
import type { FlowUpdater } from './updater.ts';
import { type ApprovalCap, OVER_CAP } from './approval-cap.ts';
import { type Lease, takeLease } from './lease.ts';
import { describe } from '../observability/log.ts';
import type { Metrics } from '../observability/metrics.ts';

/** First and longest pause between attempts to write a final poll answer the store refused (ms). */
const SETTLE_MIN_MS = 100;
const SETTLE_MAX_MS = 2000;

export interface SchedulerOptions {
  store: FlowStore;
  /** Writes of a visit go through the flow updater, under the visit's lease. */
  service: FlowUpdater;
  upstream: Upstream;
  clock: Clock;
  /** Sleeps between looks at the schedule and lease renewals. Default: the Node.js timers. */
  timers?: Timers;
  log: Logger;
  metrics: Metrics;
  leaseMs: number;
  /** the per-person approval cap, applied to a relay token answer that says who approved */
  cap: ApprovalCap;
  /** Longest sleep between looks at the schedule (other instances may add work). Default 250 ms. */
  maxIdleMs?: number;
  /** Flows visited at once. Default 64. */
  concurrency?: number;
}

export class Scheduler {
  readonly #o: Required<SchedulerOptions>;
  #running = false;
  #timer: TimerHandle | undefined;
  #wake: (() => void) | undefined;
  #loop: Promise<void> | undefined;
  readonly #inFlight = new Set<Promise<void>>();

  constructor(options: SchedulerOptions) {
    this.#o = { maxIdleMs: 250, concurrency: 64, timers: systemTimers, ...options };
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#loop = this.#run();
  }

  /** Stops taking work and waits for the visits in flight, each of which gives its lease back as it ends. */
  async close(): Promise<void> {
    this.#running = false;
    this.#wakeUp();
    await this.#loop;
    await Promise.allSettled(this.#inFlight);
  }

  /** Ends the current sleep: the loop looks at the schedule (or stops) at once. */
  #wakeUp(): void {
    this.#wake?.();
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
          for (const f of due) this.#track(this.#visit(f.deviceId, f.rid));
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
      if (this.#inFlight.size === this.#o.concurrency - 1) this.#wakeUp();
    });
  }

  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      this.#timer = this.#o.timers.setTimeout(resolve, ms);
      this.#wake = () => {
        this.#o.timers.clear(this.#timer);
        resolve();
      };
    }).finally(() => {
      this.#wake = undefined;
    });
  }

  /** One visit: take the lease, expire / poll / deliver as due, write with the lease, give the lease back. */
  async #visit(deviceId: string, rid: string): Promise<void> {
    const { store, service, clock, timers, leaseMs, log, upstream } = this.#o;
    let lease: Lease | undefined;
    try {
      lease = await takeLease({ store, clock, timers, leaseMs }, deviceId, rid);
      if (lease === undefined) {
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
        // Paused past the lease: another instance may be polling this device_code right now. Never send it twice.
        if (lease.lost) return;
        await this.#pollAndSettle(upstream, lease, current, flow.secrets.deviceCode);
        return;
      }
      // Expiry, a delivery not yet confirmed, or nothing to do but refresh the due time.
      const r = await this.#underLease(lease, current, { type: 'tick' });
      if (r.status === 'ok' && !r.transition.changed && !r.transition.notify) {
        await service.reschedule(r.transition.flow);
      }
    } catch (err) {
      log.warn({ deviceId, rid, err: describe(err) }, 'scheduler: visit failed; retried after the lease');
    } finally {
      await lease?.release();
    }
  }

  /**
   * Marks the poll in the store (`pollSentAt`: a takeover then knows the device code may be spent), sends it, and
   * writes its answer — or, finding the last poll's answer missing, only records that and waits a lease. The path
   * from the upstream's answer to the store is kept short: the approval cap (only for an answer that names a
   * person), then one compare-and-set.
   */
  async #pollAndSettle(
    upstream: RelayUpstream,
    lease: Lease,
    current: Versioned,
    deviceCode: string,
  ): Promise<void> {
    const marked = await this.#underLease(lease, current, { type: 'polling' });
    if (marked.status !== 'ok' || !marked.transition.changed || lease.lost) return;
    // The last poll's answer is missing: its instance stopped, or is still retrying the write (#keepWriting). Give it
    // a lease to write before the device code is spent again; the mark makes the flow due then.
    const f = current.flow;
    if (f.mode === 'device' && f.pollSentAt !== undefined && f.lostPoll !== true) return;
    const known = { flow: marked.transition.flow, version: marked.version };
    const outcome = await upstream.pollDeviceToken(deviceCode);
    this.#o.metrics.inc('devicegate_upstream_polls_total', { outcome: outcome.kind });
    if (isFinalPoll(outcome)) {
      await this.#keepWriting(lease, known, outcome);
      return;
    }
    await this.#underLease(lease, known, { type: 'poll', outcome });
  }

  /**
   * Writes a final poll answer (token, denial, expiry, failure) under a lease. Once the upstream gave it, it exists
   * only here — the device code is spent — so when the store cannot take it, it is kept and the write retried
   * (backoff from {@link SETTLE_MIN_MS} to {@link SETTLE_MAX_MS}, the lease taken again when it ran out meanwhile)
   * until the flow's record would have expired, instead of leaving the flow to be polled again and answered
   * `invalid_grant`.
   */
  async #keepWriting(lease: Lease, known: Versioned, outcome: PollOutcome): Promise<void> {
    const { store, clock, timers, leaseMs, log } = this.#o;
    const { deviceId, rid, expiresAt } = known.flow;
    let holder: Lease | undefined = lease;
    let retaken: Lease | undefined;
    let current: Versioned | undefined = known;
    let event: FlowEvent | undefined;
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          if (holder !== undefined) {
            event ??= { type: 'poll', outcome: await this.#capped(outcome, deviceId, rid) };
            const r = await this.#underLease(holder, current, event, subjectOf(outcome));
            if (r.status !== 'lease_lost') return;
          }
          current = undefined;
          await retaken?.release();
          holder = retaken = await takeLease({ store, clock, timers, leaseMs }, deviceId, rid);
          if (holder === undefined && (await store.get(deviceId, rid)) === undefined) return;
        } catch (err) {
          if (!(err instanceof UnavailableError)) throw err;
          current = undefined;
          if (attempt === 0)
            log.warn(
              { deviceId, rid, err: describe(err) },
              'scheduler: poll answer kept; retrying its write',
            );
        }
        if (clock.now() > expiresAt + GRACE_MS || !this.#running) {
          log.error(
            { deviceId, rid },
            'scheduler: a final poll answer was lost: the store did not take it in time',
          );
          return;
        }
        const delay = Math.min(SETTLE_MAX_MS, SETTLE_MIN_MS * 2 ** attempt);
        await new Promise<void>((resolve) => timers.setTimeout(resolve, delay));
      }
    } finally {
      await retaken?.release();
    }
  }

  /** One write through the flow updater, under `lease`; `subject` (who approved) goes into the audit line. */
  #underLease(lease: Lease, known: Versioned | undefined, event: FlowEvent, subject?: string) {
    const { deviceId, rid, token } = lease;
    return this.#o.service.update({ deviceId, rid, event, leaseToken: token, known, actor: { subject } });
  }

  /** How soon to look again at a flow whose lease another instance holds. */
  get #retryMs(): number {
    return Math.max(50, Math.min(this.#o.leaseMs / 4, 1000));
  }

  /** A token answer for a person over the approval cap becomes `access_denied` (the token is never delivered). */
  async #capped(outcome: PollOutcome, deviceId: string, rid: string): Promise<PollOutcome> {
    if (
      outcome.kind === 'token' &&
      outcome.subject !== undefined &&
      !(await this.#o.cap.admit(outcome.subject))
    ) {
      this.#o.log.info({ deviceId, rid }, 'approval refused: the person reached the approval cap');
      return { kind: 'error', code: 'access_denied', description: OVER_CAP };
    }
    return outcome;
  }
}

/** The person a token answer names (the ID token's `sub`), for the audit line — kept when the cap turns it down. */
function subjectOf(outcome: PollOutcome): string | undefined {
  return outcome.kind === 'token' ? outcome.subject : undefined;
}
