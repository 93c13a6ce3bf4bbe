/**
 * The per-person approval cap (`DEVICEGATE_APPROVALS_PER_PERSON`): how many devices one person may approve per clock
 * hour, over every instance that shares the counter. A person is the upstream's subject (the validated ID token's
 * `sub`: bridge mode's callback in ./bridge.ts, and relay mode's polls in ./scheduler.ts when the upstream's token
 * answer carries an ID token), counted under a keyed hash so the counter holds no personal data. The window is fixed (the clock hour):
 * a burst across the turn of the hour can reach twice the cap, which the cap's purpose (a stolen or careless account
 * approving a whole fleet) tolerates, and it needs one counter per person instead of a log of approvals.
 */
import type { Clock } from '../core/clock.ts';
import type { Keys } from '../core/crypto.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { AttemptCounter } from '../store/types.ts';

const HOUR_MS = 60 * 60 * 1000;

/** What the device is told (with `access_denied`) when the person who approved it reached the cap. */
export const OVER_CAP = 'the person who signed in has approved too many devices in the last hour';

export interface ApprovalCapOptions {
  /** the attempt counter beside the store (Redis: shared by every instance) */
  counter: AttemptCounter;
  keys: Keys;
  clock: Clock;
  /** approvals per person per clock hour; 0 = no cap */
  perHour: number;
  /** counts refusals (`devicegate_approvals_capped_total`) */
  metrics: Metrics;
}

export class ApprovalCap {
  readonly #o: ApprovalCapOptions;

  constructor(options: ApprovalCapOptions) {
    this.#o = options;
  }

  /** Whether approvals are counted at all (`DEVICEGATE_APPROVALS_PER_PERSON` > 0). */
  get enabled(): boolean {
    return this.#o.perHour > 0;
  }

  /**
   * Counts one approval by `subject` and says whether it is within the cap. Refused approvals count too, so
   * retrying does not help. Throws `UnavailableError` when the counter cannot be reached.
   */
  async admit(subject: string): Promise<boolean> {
    const { counter, keys, clock, perHour, metrics } = this.#o;
    if (perHour === 0) return true;
    const hour = Math.floor(clock.now() / HOUR_MS);
    const key = `approvals:${keys.lookupHash('approver', subject)}:${hour}`;
    const within = (await counter.add(key, 1, HOUR_MS)) <= perHour;
    if (!within) metrics.inc('devicegate_approvals_capped_total');
    return within;
  }
}
