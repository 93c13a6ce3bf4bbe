/**
 * A flow's lease held by this instance while it works on the flow (the scheduler's visits). The store decides who
 * holds a lease ({@link FlowStore.acquireLease}); this module keeps one alive and knows when it can no longer be
 * trusted:
 * - it is renewed every third of the lease while held, so work slower than the lease is not repeated by another
 *   instance;
 * - the holder keeps a local deadline (the lease's end, counted from a time read before the call that took or
 *   renewed it), so a process paused past it (SIGSTOP, a VM freeze, a long GC) sees the lease as lost even though no
 *   renewal failed — and does not renew it then, which could take it back from an instance that took over;
 * - a refused renewal marks it lost; a renewal that fails to reach the store leaves the old deadline standing.
 */
import { randomBytes } from 'node:crypto';
import { type Clock, type TimerHandle, type Timers, systemTimers } from '../core/clock.ts';
import type { FlowStore } from '../store/types.ts';

export interface LeaseDeps {
  store: Pick<FlowStore, 'acquireLease' | 'releaseLease'>;
  clock: Clock;
  /** Where the renewal timer runs. Default: the Node.js timers. */
  timers?: Timers;
  leaseMs: number;
}

/** A fresh, unguessable lease token (the pid only helps reading a dump). */
export function newLeaseToken(): string {
  return `${process.pid}.${randomBytes(12).toString('base64url')}`;
}

/**
 * Takes the flow's lease with a fresh token and starts renewing it. `undefined` when another holder has it, or the
 * flow does not exist. Store failures reject (with the store's `UnavailableError`).
 */
export async function takeLease(deps: LeaseDeps, deviceId: string, rid: string): Promise<Lease | undefined> {
  const token = newLeaseToken();
  const asked = deps.clock.now();
  if (!(await deps.store.acquireLease(deviceId, rid, token, asked, deps.leaseMs))) return undefined;
  return new Lease(deps, deviceId, rid, token, asked + deps.leaseMs);
}

/** A lease this instance holds; see {@link takeLease}. Call {@link Lease.release} when the work is done. */
export class Lease {
  readonly deviceId: string;
  readonly rid: string;
  /** What the store knows the holder by: writes under the lease pass it (`update`'s `leaseToken`). */
  readonly token: string;
  readonly #deps: LeaseDeps;
  readonly #timers: Timers;
  /** Local deadline: the lease is surely ours before then. */
  #until: number;
  /** A renewal was refused or came too late, or the lease was released. */
  #gone = false;
  readonly #timer: TimerHandle;
  #renewing: Promise<void> | undefined;

  /** Only {@link takeLease} makes one, right after the store granted the lease until `until`. */
  constructor(deps: LeaseDeps, deviceId: string, rid: string, token: string, until: number) {
    this.#deps = deps;
    this.#timers = deps.timers ?? systemTimers;
    this.deviceId = deviceId;
    this.rid = rid;
    this.token = token;
    this.#until = until;
    this.#timer = this.#timers.setInterval(() => this.#renew(), Math.max(1, Math.floor(deps.leaseMs / 3)));
    // Renewal alone must not keep the process alive.
    this.#timer.unref();
  }

  /**
   * True once the lease can no longer be trusted: a renewal was refused, the local deadline passed (whatever the
   * timers did meanwhile), or it was released. Check it right before an action another holder must not repeat.
   */
  get lost(): boolean {
    return this.#gone || this.#deps.clock.now() >= this.#until;
  }

  /** Stops renewing, then gives the lease back — after any renewal in flight, which would otherwise re-take it. */
  async release(): Promise<void> {
    this.#timers.clear(this.#timer);
    this.#gone = true;
    await this.#renewing;
    await this.#deps.store.releaseLease(this.deviceId, this.rid, this.token).catch(() => undefined);
  }

  #renew(): void {
    if (this.#gone || this.#renewing !== undefined) return;
    const { store, clock, leaseMs } = this.#deps;
    const now = clock.now();
    if (now >= this.#until) {
      // Paused past the deadline: the lease may be another instance's by now; renewing could take it back.
      this.#gone = true;
      this.#timers.clear(this.#timer);
      return;
    }
    this.#renewing = store
      .acquireLease(this.deviceId, this.rid, this.token, now, leaseMs)
      .then(
        (ok) => {
          if (ok) {
            this.#until = now + leaseMs;
          } else {
            this.#gone = true;
            this.#timers.clear(this.#timer);
          }
        },
        () => undefined, // the store is unreachable: the old deadline stands
      )
      .finally(() => {
        this.#renewing = undefined;
      });
  }
}
