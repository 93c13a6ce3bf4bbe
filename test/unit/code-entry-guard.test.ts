/**
 * The failed-entry guard (src/service/code-entry-guard.ts) on fake time with the memory attempt counter: fixed
 * windows and their edges, successes taken back, the per-/64 and the global limit, and counter failures.
 */
import { normalizeIP } from '@fastify/rate-limit';
import { describe, expect, it } from 'vitest';
import { UnavailableError } from '../../src/core/errors.ts';
import { type CodeEntryLimits, LIMIT_WINDOW_MS } from '../../src/core/limits.ts';
import { type Attempt, CodeEntryGuard, addressBlock } from '../../src/service/code-entry-guard.ts';
import { MemoryAttemptCounter } from '../../src/store/memory-attempts.ts';
import type { AttemptCounter } from '../../src/store/types.ts';
import { FakeClock } from '../helpers/clock.ts';

const MINUTE = LIMIT_WINDOW_MS;

function limits(perIp: number, global: number): Pick<CodeEntryLimits, 'perIp' | 'global'> {
  return { perIp: { max: perIp, windowMs: MINUTE }, global: { max: global, windowMs: MINUTE } };
}

function setup(perIp: number, global: number, counter?: AttemptCounter) {
  // a window boundary: 2026-01-01T00:00:00Z
  const clock = new FakeClock(Date.UTC(2026, 0, 1));
  const guard = new CodeEntryGuard({
    counter: counter ?? new MemoryAttemptCounter(clock),
    limits: limits(perIp, global),
    clock,
  });
  /** `n` entries from `ip` that each fail (are not taken back); returns whether each was limited. */
  const fail = async (ip: string, n = 1) => {
    const out: Attempt[] = [];
    for (let i = 0; i < n; i++) out.push(await guard.begin(ip));
    return out.map((a) => a.limited);
  };
  return { clock, guard, fail };
}

describe('CodeEntryGuard', () => {
  it('allows max failures per window, refuses the next with the seconds until the window ends', async () => {
    const { clock, guard, fail } = setup(3, 100);
    clock.advance(20_000);
    expect(await fail('192.0.2.1', 3)).toEqual([false, false, false]);
    expect(await guard.begin('192.0.2.1')).toEqual({ limited: true, retryAfter: 40 });
    clock.advance(39_999);
    expect(await guard.begin('192.0.2.1')).toEqual({ limited: true, retryAfter: 1 });
    // the next window starts exactly at the boundary
    clock.advance(1);
    expect(await fail('192.0.2.1', 3)).toEqual([false, false, false]);
    expect(await fail('192.0.2.1')).toEqual([true]);
  });

  it('counts a window fixed on the clock: failures at its end and the start of the next both count once', async () => {
    const { clock, fail } = setup(2, 100);
    clock.advance(MINUTE - 1);
    expect(await fail('192.0.2.1', 3)).toEqual([false, false, true]);
    clock.advance(1);
    expect(await fail('192.0.2.1', 3)).toEqual([false, false, true]);
  });

  it('a success is taken back and resets nothing; a refused entry costs nothing', async () => {
    const { guard, fail } = setup(2, 3);
    expect(await fail('192.0.2.1')).toEqual([false]);
    for (let i = 0; i < 5; i++) {
      const attempt = await guard.begin('192.0.2.1');
      expect(attempt.limited).toBe(false);
      if (!attempt.limited) await attempt.succeeded();
    }
    expect(await fail('192.0.2.1', 2)).toEqual([false, true]);
    // the refused one did not use the global budget (3): another address still has one failure left
    expect(await fail('198.51.100.1', 2)).toEqual([false, true]);
  });

  it('limits per IPv6 /64 and per IPv4 address, an IPv4-mapped address as its IPv4', async () => {
    const { fail } = setup(2, 100);
    expect(await fail('2001:db8:1:2::1')).toEqual([false]);
    expect(await fail('2001:db8:1:2:ffff:ffff:ffff:ffff')).toEqual([false]);
    expect(await fail('2001:0db8:0001:0002:0:0:0:9')).toEqual([true]);
    expect(await fail('2001:db8:1:3::1', 2)).toEqual([false, false]);
    expect(await fail('192.0.2.7', 2)).toEqual([false, false]);
    expect(await fail('::ffff:192.0.2.7')).toEqual([true]);
    expect(await fail('192.0.2.8')).toEqual([false]);
  });

  it('limits all addresses together by the global limit', async () => {
    const { clock, guard, fail } = setup(2, 5);
    expect(await fail('192.0.2.1', 2)).toEqual([false, false]);
    expect(await fail('192.0.2.2', 2)).toEqual([false, false]);
    expect(await fail('192.0.2.3')).toEqual([false]);
    clock.advance(15_000);
    expect(await guard.begin('192.0.2.4')).toEqual({ limited: true, retryAfter: 45 });
    clock.advance(45_000);
    expect(await fail('192.0.2.4')).toEqual([false]);
  });

  it('rethrows a counter failure with nothing left counted', async () => {
    const clock = new FakeClock(Date.UTC(2026, 0, 1));
    const memory = new MemoryAttemptCounter(clock);
    let failOn: ((key: string, by: number) => boolean) | undefined;
    const flaky: AttemptCounter = {
      add: async (key, by, ttlMs) => {
        if (failOn?.(key, by) === true) throw new UnavailableError('store', 'down');
        return memory.add(key, by, ttlMs);
      },
    };
    const guard = new CodeEntryGuard({ counter: flaky, limits: limits(1, 100), clock });
    // the global counter fails after the per-address one counted: that one is taken back
    failOn = (key) => key.startsWith('fail:global');
    await expect(guard.begin('192.0.2.1')).rejects.toBeInstanceOf(UnavailableError);
    failOn = undefined;
    // so the address still has its one failure (max 1) to spend
    const attempt = await guard.begin('192.0.2.1');
    expect(attempt.limited).toBe(false);
    // taking back a success fails: the error reaches the caller, and the entry stays counted
    failOn = (_key, by) => by < 0;
    if (!attempt.limited) await expect(attempt.succeeded()).rejects.toBeInstanceOf(UnavailableError);
    failOn = undefined;
    expect((await guard.begin('192.0.2.1')).limited).toBe(true);
    expect((await guard.begin('192.0.2.2')).limited).toBe(false);
  });
});

describe('addressBlock', () => {
  it('keys addresses as the flood guard does (normalizeIP of @fastify/rate-limit)', () => {
    for (const ip of [
      '192.0.2.1',
      '2001:db8::1',
      '2001:DB8:0:0:1:2:3:4',
      '2001:db8:0:1:2::',
      '2001:db8:1:2:3:4:5:6',
      'fe80::1%eth0',
      '::1',
      '::',
      '::ffff:203.0.113.9',
      '::ffff:cb00:7109',
      '64:ff9b::192.0.2.33',
      '1:0:0:1:2:3:4:5',
      '0:0:1:0:0:0:0:1',
    ]) {
      expect(addressBlock(ip), ip).toBe(normalizeIP(ip));
    }
  });
});
