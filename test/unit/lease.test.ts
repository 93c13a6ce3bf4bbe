/**
 * The lease holder (src/service/lease.ts) on fake time: renewal every third of the lease, the local deadline, `lost`,
 * and a release that waits for a renewal in flight. The store is a recording fake whose answers each test sets.
 */
import { describe, expect, it } from 'vitest';
import { UnavailableError } from '../../src/core/errors.ts';
import { type LeaseDeps, takeLease } from '../../src/service/lease.ts';
import { FakeTime } from '../helpers/clock.ts';

const LEASE_MS = 3000;

interface Call {
  op: 'acquire' | 'release';
  token: string;
  /** the `now` passed to acquireLease; the fake clock's time for a release */
  at: number;
}

/** Records every lease call; `answer` decides what the next acquireLease returns (default: granted). */
class RecordingStore {
  readonly calls: Call[] = [];
  answer: () => Promise<boolean> = async () => true;
  readonly #time: FakeTime;

  constructor(time: FakeTime) {
    this.#time = time;
  }

  acquireLease(deviceId: string, rid: string, token: string, now: number, leaseMs: number): Promise<boolean> {
    expect([deviceId, rid, leaseMs]).toEqual(['tv-1', 'r-1', LEASE_MS]);
    this.calls.push({ op: 'acquire', token, at: now });
    return this.answer();
  }

  async releaseLease(deviceId: string, rid: string, token: string): Promise<void> {
    expect([deviceId, rid]).toEqual(['tv-1', 'r-1']);
    this.calls.push({ op: 'release', token, at: this.#time.now() });
  }
}

function setup() {
  const time = new FakeTime();
  const store = new RecordingStore(time);
  const deps: LeaseDeps = { store, clock: time, timers: time, leaseMs: LEASE_MS };
  return { time, store, deps, t0: time.now() };
}

function deferred<T>() {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

describe('lease holder', () => {
  it('is renewed every third of the lease while held, and stops renewing once released', async () => {
    const { time, store, deps, t0 } = setup();
    const lease = await takeLease(deps, 'tv-1', 'r-1');
    expect(lease).toBeDefined();
    await time.tick(10_000);
    expect(lease!.lost).toBe(false);
    expect(store.calls.map((c) => c.at - t0)).toEqual([
      0, 1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10_000,
    ]);
    // One token throughout: the renewals extend the lease taken, they do not take a new one.
    expect(new Set(store.calls.map((c) => c.token)).size).toBe(1);

    await lease!.release();
    expect(lease!.lost).toBe(true);
    expect(store.calls.at(-1)).toEqual({ op: 'release', token: lease!.token, at: t0 + 10_000 });
    expect(time.pending).toBe(0);
    await time.tick(5000);
    expect(store.calls).toHaveLength(12);
  });

  it('is not taken when the store refuses it (another holder, or no such flow)', async () => {
    const { time, store, deps } = setup();
    store.answer = async () => false;
    expect(await takeLease(deps, 'tv-1', 'r-1')).toBeUndefined();
    expect(time.pending).toBe(0);
  });

  it('is lost when a renewal is refused, and renewing stops', async () => {
    const { time, store, deps } = setup();
    const lease = (await takeLease(deps, 'tv-1', 'r-1'))!;
    store.answer = async () => false;
    await time.tick(999);
    expect(lease.lost).toBe(false);
    await time.tick(1);
    expect(lease.lost).toBe(true);
    await time.tick(5000);
    expect(store.calls.map((c) => c.op)).toEqual(['acquire', 'acquire']);
    expect(time.pending).toBe(0);
  });

  it('keeps its deadline while renewals cannot reach the store, and is lost when the deadline passes', async () => {
    const { time, store, deps, t0 } = setup();
    const lease = (await takeLease(deps, 'tv-1', 'r-1'))!;
    store.answer = () => Promise.reject(new UnavailableError('store', 'down'));
    await time.tick(LEASE_MS - 1);
    expect(lease.lost).toBe(false);
    await time.tick(1);
    expect(lease.lost).toBe(true);
    // Renewals at +1 s and +2 s failed; the one due at +3 s finds the deadline passed and does not ask.
    expect(store.calls.map((c) => c.at - t0)).toEqual([0, 1000, 2000]);
    expect(time.pending).toBe(0);
  });

  it('a pause past the local deadline marks it lost without renewing it', async () => {
    const { time, store, deps } = setup();
    const lease = (await takeLease(deps, 'tv-1', 'r-1'))!;
    // The process stood still (SIGSTOP, a VM freeze): the clock moved, no timer fired.
    time.advance(LEASE_MS + 500);
    expect(lease.lost).toBe(true);
    // The overdue renewal fires now, and must not take the lease back from whoever took it over meanwhile.
    await time.tick(1000);
    expect(store.calls.map((c) => c.op)).toEqual(['acquire']);
    expect(time.pending).toBe(0);
    await lease.release();
    expect(store.calls.map((c) => c.op)).toEqual(['acquire', 'release']);
  });

  it('release waits for a renewal in flight, so the renewal cannot re-take the lease after it', async () => {
    const { time, store, deps, t0 } = setup();
    const lease = (await takeLease(deps, 'tv-1', 'r-1'))!;
    const renewal = deferred<boolean>();
    store.answer = () => renewal.promise;
    await time.tick(1000);
    expect(store.calls.map((c) => c.op)).toEqual(['acquire', 'acquire']);

    let released = false;
    const releasing = lease.release().then(() => {
      released = true;
    });
    await time.tick(500);
    expect([released, store.calls.length]).toEqual([false, 2]);

    renewal.resolve(true);
    await releasing;
    expect(store.calls).toEqual([
      { op: 'acquire', token: lease.token, at: t0 },
      { op: 'acquire', token: lease.token, at: t0 + 1000 },
      { op: 'release', token: lease.token, at: t0 + 1500 },
    ]);
    // A granted renewal that lands during the release does not revive the lease.
    expect(lease.lost).toBe(true);
    expect(time.pending).toBe(0);
  });
});
