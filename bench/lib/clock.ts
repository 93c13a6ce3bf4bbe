/**
 * Time for measurements that cross processes: milliseconds since the epoch with sub-millisecond resolution
 * (`performance.timeOrigin + performance.now()`). Every bench process on this machine reads the same wall clock, so
 * stamps from different processes can be compared once the small offset between them is measured (see
 * {@link clockOffset}).
 */

/** Epoch milliseconds, sub-millisecond resolution, monotonic within a process. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

/**
 * Estimates how far `remoteNow` (another process's {@link nowMs}) is ahead of ours: the median of `samples` round
 * trips of `(remote − midpoint of the round trip)`. `uncertaintyMs` is half the median round trip.
 */
export async function clockOffset(
  remoteNow: () => Promise<number>,
  samples = 15,
): Promise<{ offsetMs: number; uncertaintyMs: number }> {
  const offsets: number[] = [];
  const rtts: number[] = [];
  for (let i = 0; i < samples; i++) {
    const t0 = nowMs();
    const remote = await remoteNow();
    const t1 = nowMs();
    offsets.push(remote - (t0 + t1) / 2);
    rtts.push(t1 - t0);
  }
  const median = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
  return { offsetMs: median(offsets), uncertaintyMs: median(rtts) / 2 };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
