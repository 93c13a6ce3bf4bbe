/**
 * The numbers of a fleet run (`fleet.ts`): latency percentiles by the nearest-rank method, and the tally of the round
 * trips `runRoundTrips` counted.
 */
import type { DeviceReply } from '../src/core/protocol.ts';

export interface LatencySummary {
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface RoundTripResult {
  /** round trips that got a reply (any status), counted after warm-up */
  completed: number;
  /** round trips that did not end well: a reply with `status: "error"`, or no reply at all (`failed`) */
  errors: number;
  /** round trips with no reply: timeout, publish refused, connection lost */
  failed: number;
  /** completed round trips per second over the measured window */
  perSecond: number;
  /** latency of the completed round trips, ms (NaN when there were none) */
  latencyMs: LatencySummary;
  /** completed round trips by reply status */
  replies: Map<DeviceReply['status'], number>;
  /** error replies by OAuth error code */
  errorCodes: Map<string, number>;
  /** ms the measured window lasted */
  measuredMs: number;
}

/**
 * The `p`-th percentile (0–100) of `values` by the nearest-rank method: the smallest value such that at least `p`%
 * of the values are at or below it. `NaN` for an empty list. Does not modify `values`.
 */
export function percentile(values: readonly number[], p: number): number {
  return percentileOfSorted(
    [...values].sort((a, b) => a - b),
    p,
  );
}

function percentileOfSorted(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  if (!(p >= 0 && p <= 100)) throw new RangeError(`percentile must be within 0..100, got ${p}`);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1]!;
}

/** p50, p90, p99 and max of `values`. */
export function summarize(values: readonly number[]): LatencySummary {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    p50: percentileOfSorted(sorted, 50),
    p90: percentileOfSorted(sorted, 90),
    p99: percentileOfSorted(sorted, 99),
    max: sorted.length === 0 ? Number.NaN : sorted[sorted.length - 1]!,
  };
}

/**
 * The round trips of one `runRoundTrips` run that count (the caller leaves out those started in the warm-up); the
 * measured window runs from `measureFrom` to the last counted reply.
 */
export class Tally {
  readonly #measureFrom: number;
  readonly #latencies: number[] = [];
  readonly #replies = new Map<DeviceReply['status'], number>();
  readonly #errorCodes = new Map<string, number>();
  #failed = 0;
  #errors = 0;
  #lastDone: number;

  constructor(measureFrom: number) {
    this.#measureFrom = measureFrom;
    this.#lastDone = measureFrom;
  }

  /** A round trip sent at `t0` got `reply` at `t1`. */
  reply(reply: DeviceReply, t0: number, t1: number): void {
    this.#latencies.push(t1 - t0);
    this.#lastDone = Math.max(this.#lastDone, t1);
    this.#replies.set(reply.status, (this.#replies.get(reply.status) ?? 0) + 1);
    if (reply.status === 'error') {
      this.#errors++;
      this.#errorCodes.set(reply.error, (this.#errorCodes.get(reply.error) ?? 0) + 1);
    }
  }

  /** A round trip got no reply. */
  failure(): void {
    this.#failed++;
    this.#errors++;
  }

  result(): RoundTripResult {
    const measuredMs = Math.max(0, this.#lastDone - this.#measureFrom);
    const completed = this.#latencies.length;
    return {
      completed,
      errors: this.#errors,
      failed: this.#failed,
      perSecond: measuredMs > 0 ? completed / (measuredMs / 1000) : 0,
      latencyMs: summarize(this.#latencies),
      replies: this.#replies,
      errorCodes: this.#errorCodes,
      measuredMs,
    };
  }
}
