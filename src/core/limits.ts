/**
 * The brute-force limits of the code-entry page (RFC 8628 §5.1) and the arithmetic they are derived from. This is
 * the only copy: `loadConfig` derives its defaults here, and the page's failed-entry guard enforces what it returns.
 *
 * An attacker who guesses codes at R per second for a code's lifetime T hits one of N live codes with probability
 * P ≈ R·T·N / |space| (a union bound), |space| = 20^8 = 2.56·10^10 ({@link USER_CODE_SPACE}). The global limit caps R
 * for everyone together, so it is the one that bounds P; the per-address limit keeps one client from spending the
 * whole global budget on its own (and so locking everyone else out) as long as the attacker has few addresses.
 *
 *   P ≤ 10^-6  ⇔  R ≤ 10^-6 · 20^8 / (T · N)
 *   T = 600 s, N = 250 live codes (the defaults)  →  R ≤ 0.1707/s = 10.24/min  →  global 10 failures per minute
 *   global 10 / min, T = 600 s  →  R·T = 100 guesses per code lifetime, P = 3.9·10^-9 · N
 *   N = 100 →  P = 3.9·10^-7;  N = 255 → P = 9.96·10^-7 (the largest N below 10^-6, {@link maxLiveCodes});
 *   N = 10^4 → P = 3.9·10^-5 (too high: lower the global limit or the TTL, or lengthen the code)
 *
 * Fixed windows let a burst of up to 2·max straddle a window boundary, so a lifetime of T holds at most
 * max·(T/window + 1) = 110 guesses rather than 100 (P × 1.1); the table above is the long-run rate.
 *
 * Per address: 5 failures per minute (or the global limit when that is lower) — a person who mistypes a few times is
 * never stopped; a single address needs two windows to spend one window's global budget.
 */
import { USER_CODE_SPACE } from './codes.ts';

/** The guessing probability the default limits are derived for. */
export const GUESS_TARGET = 1e-6;

/** The window of both failed-entry limits, and of the flood guard. */
export const LIMIT_WINDOW_MS = 60_000;

/** Failed entries per address per window unless configured (capped by the global limit). */
export const DEFAULT_PER_IP_PER_MINUTE = 5;

/**
 * POSTs (and callbacks) per client address per minute on each form route: a per-instance flood guard, not a
 * guessing limit (the failed-entry limits are).
 */
export const FLOOD_REQUESTS_PER_MINUTE = 60;

/** One fixed-window limit: at most `max` failed code entries per `windowMs`. */
export interface WindowLimit {
  readonly max: number;
  readonly windowMs: number;
}

export interface CodeEntryLimits {
  /** failed entries per client address (IPv6: per /64) */
  readonly perIp: WindowLimit;
  /** failed entries over all clients of the deployment (every instance, when the counter is shared) */
  readonly global: WindowLimit;
  /** POSTs (or callbacks) per client address per minute, on each form route ({@link FLOOD_REQUESTS_PER_MINUTE}) */
  readonly requestsPerMinute: number;
}

/**
 * P(an attacker guesses any of `liveCodes` live codes within one code lifetime) ≈ R·T·N / 20^8, where R is the
 * global failure budget per second. Capped at 1.
 */
export function guessProbability(globalPerMinute: number, ttlSeconds: number, liveCodes: number): number {
  return Math.min(1, ((globalPerMinute / 60) * ttlSeconds * liveCodes) / USER_CODE_SPACE);
}

/** The most live codes for which {@link guessProbability} stays below `target`. */
export function maxLiveCodes(globalPerMinute: number, ttlSeconds: number, target = GUESS_TARGET): number {
  return Math.ceil((target * USER_CODE_SPACE) / ((globalPerMinute / 60) * ttlSeconds)) - 1;
}

/** The largest global failures-per-minute that keeps {@link guessProbability} ≤ {@link GUESS_TARGET}; at least 1. */
export function derivedGlobalPerMinute(ttlSeconds: number, liveCodes: number): number {
  return Math.max(1, Math.floor((GUESS_TARGET * USER_CODE_SPACE * 60) / (ttlSeconds * liveCodes)));
}

/**
 * The limits for a deployment: the configured per-minute values where given, else the derived global limit and
 * {@link DEFAULT_PER_IP_PER_MINUTE} (never above the global one).
 */
export function codeEntryLimits(o: {
  ttlSeconds: number;
  liveCodes: number;
  globalPerMinute?: number | undefined;
  perIpPerMinute?: number | undefined;
}): CodeEntryLimits {
  const global = o.globalPerMinute ?? derivedGlobalPerMinute(o.ttlSeconds, o.liveCodes);
  const perIp = o.perIpPerMinute ?? Math.min(DEFAULT_PER_IP_PER_MINUTE, global);
  return {
    perIp: { max: perIp, windowMs: LIMIT_WINDOW_MS },
    global: { max: global, windowMs: LIMIT_WINDOW_MS },
    requestsPerMinute: FLOOD_REQUESTS_PER_MINUTE,
  };
}
