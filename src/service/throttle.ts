/**
 * A per-device token bucket in front of the flow service (docs/security.md, request flooding): a device that sends requests
 * faster than any honest device would is answered `slow_down` with `retry_after`, before its request costs a store
 * read or an upstream call. Kept in memory per instance (with a shared subscription a device's requests spread over
 * the instances, so the effective limit is at most N times this), bounded in size: the least recently seen devices
 * are forgotten first. A refused device is answered once per throttle window (until a token is back, the `retry_after`
 * it was told); its further requests within the window are dropped unanswered, so a device that floods cannot make
 * the gateway publish (and an embedded broker store, for a persistent session) one reply per request.
 */
export interface ThrottleOptions {
  /** requests a device may send in a burst */
  burst: number;
  /** requests per second refilled */
  perSecond: number;
  /** devices remembered at most */
  maxDevices: number;
}

interface Bucket {
  tokens: number;
  at: number;
  /** until then (ms) the device has been answered `slow_down` once and further refusals go unanswered */
  quietUntil: number;
}

export class DeviceThrottle {
  readonly #o: ThrottleOptions;
  readonly #buckets = new Map<string, Bucket>();

  constructor(options: ThrottleOptions) {
    this.#o = options;
  }

  /** Takes one token for `deviceId` at `now` (ms). Returns 0 when allowed, else the seconds to wait. */
  take(deviceId: string, now: number): number {
    const { burst, perSecond, maxDevices } = this.#o;
    let b = this.#buckets.get(deviceId);
    if (b === undefined) {
      b = { tokens: burst, at: now, quietUntil: 0 };
      if (this.#buckets.size >= maxDevices) {
        const oldest = this.#buckets.keys().next().value;
        if (oldest !== undefined) this.#buckets.delete(oldest);
      }
    } else {
      this.#buckets.delete(deviceId); // re-inserted below: Map order = least recently seen first
      b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * perSecond);
      b.at = now;
    }
    this.#buckets.set(deviceId, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - b.tokens) / perSecond));
  }

  /**
   * Whether a refusal of `deviceId` at `now` (ms) — {@link take} returned `wait` seconds — is to be answered: the
   * first refusal in a window is, and the window then lasts `wait` seconds; later refusals within it are not.
   */
  answerRefusal(deviceId: string, now: number, wait: number): boolean {
    const b = this.#buckets.get(deviceId);
    if (b === undefined || now < b.quietUntil) return false;
    b.quietUntil = now + wait * 1000;
    return true;
  }
}
