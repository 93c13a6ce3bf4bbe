/**
 * The failed-entry limits as loadConfig derives them (src/core/limits.ts): a looser derivation, or a default that
 * drifts from the arithmetic, fails here. test/integration/web-security.test.ts checks that the page built from the
 * same config refuses the (limit+1)-th failure.
 */
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/index.ts';
import { userCodeSpace } from '../../src/core/codes.ts';
import { GUESS_TARGET, LIMIT_WINDOW_MS, guessProbability, maxLiveCodes } from '../../src/core/limits.ts';

/** Global failures per minute of a config. */
function globalPerMinute(env: Record<string, string>): number {
  const { global } = loadConfig(env).codeEntryLimits;
  return (global.max * 60_000) / global.windowMs;
}

describe('code-entry limits from loadConfig', () => {
  it('derive 10 global and 5 per-address failures per minute for the documented 250 live codes and 600 s', () => {
    const c = loadConfig({});
    expect(c.codeTtlSeconds).toBe(600);
    expect(c.codeEntryLimits).toEqual({
      perIp: { max: 5, windowMs: LIMIT_WINDOW_MS },
      global: { max: 10, windowMs: LIMIT_WINDOW_MS },
      requestsPerMinute: 60,
    });
    expect(guessProbability(globalPerMinute({}), c.codeTtlSeconds, 250, 8)).toBeLessThanOrEqual(GUESS_TARGET);
    expect(maxLiveCodes(globalPerMinute({}), c.codeTtlSeconds, 8)).toBe(255);
  });

  it('keep the guessing probability at or below 1e-6 for any live-code count and lifetime', () => {
    for (const [ttl, live] of [
      [600, 250],
      [600, 1],
      [60, 10],
      [1800, 10_000],
      [300, 100_000],
    ] as const) {
      const env = { DEVICEGATE_CODE_TTL: String(ttl), DEVICEGATE_LIVE_CODES: String(live) };
      const perMinute = globalPerMinute(env);
      if (perMinute > 1)
        expect(guessProbability(perMinute, ttl, live, 8), `${ttl} s, ${live}`).toBeLessThanOrEqual(1e-6);
      // and the next integer limit would not
      expect(guessProbability(perMinute + 1, ttl, live, 8), `${ttl} s, ${live}`).toBeGreaterThan(1e-6);
      const { perIp, global } = loadConfig(env).codeEntryLimits;
      expect(perIp.max).toBeLessThanOrEqual(global.max);
    }
  });

  it('never go below one failure per minute, and take configured values as given', () => {
    expect(globalPerMinute({ DEVICEGATE_LIVE_CODES: '10000000' })).toBe(1);
    expect(loadConfig({ DEVICEGATE_LIVE_CODES: '10000000' }).codeEntryLimits.perIp.max).toBe(1);
    const c = loadConfig({ DEVICEGATE_CODE_ENTRY_LIMIT_GLOBAL: '40', DEVICEGATE_CODE_ENTRY_LIMIT_IP: '7' });
    expect(c.codeEntryLimits.global.max).toBe(40);
    expect(c.codeEntryLimits.perIp.max).toBe(7);
  });

  it('computes P ≈ R·T·N / 20^L', () => {
    expect(userCodeSpace(8)).toBe(20 ** 8);
    expect(guessProbability(10, 600, 100, 8)).toBeCloseTo(3.90625e-7, 12);
    expect(guessProbability(10, 600, 1e4, 8)).toBeCloseTo(3.90625e-5, 10);
    expect(guessProbability(1e6, 600, 1e6, 8)).toBe(1);
    expect(guessProbability(10, 600, 1e4, 10)).toBeCloseTo(9.765625e-8, 14);
  });

  it('derive the limits from DEVICEGATE_USER_CODE_LENGTH: 10^4 live codes need 9 letters for 5 / min, 10 for 102 / min', () => {
    expect(loadConfig({}).userCodeLength).toBe(8);
    const live = { DEVICEGATE_LIVE_CODES: '10000' };
    // 8 letters: the floor of one failure a minute is all that is left, and it is above the target
    expect(globalPerMinute(live)).toBe(1);
    expect(guessProbability(1, 600, 1e4, 8)).toBeCloseTo(3.90625e-6, 12);
    const expected = { 9: [5, 9.765625e-7], 10: [102, 9.9609375e-7] } as const;
    for (const [length, [perMinute, p]] of Object.entries(expected)) {
      const env = { ...live, DEVICEGATE_USER_CODE_LENGTH: length };
      const c = loadConfig(env);
      expect(c.userCodeLength).toBe(Number(length));
      expect(c.codeEntryLimits.global.max, `${length} letters`).toBe(perMinute);
      expect(c.codeEntryLimits.perIp.max).toBe(Math.min(5, perMinute));
      expect(guessProbability(perMinute, 600, 1e4, Number(length))).toBeCloseTo(p, 14);
      expect(guessProbability(perMinute, 600, 1e4, Number(length))).toBeLessThanOrEqual(GUESS_TARGET);
      expect(guessProbability(perMinute + 1, 600, 1e4, Number(length))).toBeGreaterThan(GUESS_TARGET);
    }
    // the defaults (250 live codes) at 10 letters: 160 000 / 400 = 4096 a minute
    expect(globalPerMinute({ DEVICEGATE_USER_CODE_LENGTH: '10' })).toBe(4096);
  });

  it('refuses code lengths outside 8 to 12 letters, naming the variable', () => {
    for (const bad of ['7', '13', 'ten', '8.5']) {
      expect(() => loadConfig({ DEVICEGATE_USER_CODE_LENGTH: bad })).toThrow(/DEVICEGATE_USER_CODE_LENGTH/);
    }
  });
});
