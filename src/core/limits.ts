/**
 * The brute-force limits of the code-entry page (RFC 8628 §5.1) and the arithmetic they are derived from. This is
 * the only copy: `loadConfig` derives its defaults here, and the page's failed-entry guard enforces what it returns.
 * They bound typed codes only: a scanned `verification_uri_complete` carries a 128-bit proof
 * (src/core/scan-link.ts) and never goes through the guard, so a tripped limit locks out no one holding the link.
 *
 * An attacker who guesses codes at R per second for a code's lifetime T hits one of N live codes with probability
 * P ≈ R·T·N / |space| (a union bound), |space| = 20^L for codes of L letters ({@link userCodeSpace}). The global
 * limit caps R for everyone together, so it is the one that bounds P; the per-address limit keeps one client from
 * spending the whole global budget on its own as long as the attacker has few addresses.
 *
 *   P ≤ 10^-6  ⇔  R ≤ 10^-6 · 20^L / (T · N)
 *   L = 8, T = 600 s, N = 250 live codes (the defaults)  →  R ≤ 0.1707/s = 10.24/min  →  global 10 failures per minute
 *   global 10 / min, T = 600 s  →  R·T = 100 guesses per code lifetime, P = 3.9·10^-9 · N
 *   N = 100 →  P = 3.9·10^-7;  N = 255 → P = 9.96·10^-7 (the largest N below 10^-6, {@link maxLiveCodes})
 *   N = 10^4, T = 600 s:  L = 8 → global 1 / min, P = 3.9·10^-6 (the floor of 1 is above the target)
 *                         L = 9 → R ≤ 5.12/min → global 5 / min, P = 5/60 · 600 · 10^4 / 20^9 = 9.77·10^-7
 *                         L = 10 → R ≤ 102.4/min → global 102 / min, P = 102/60 · 600 · 10^4 / 20^10 = 9.96·10^-7
 *
 * Fixed windows let a burst of up to 2·max straddle a window boundary, so a lifetime of T holds at most
 * max·(T/window + 1) = 110 guesses rather than 100 (P × 1.1); the table above is the long-run rate.
 *
 * Per address: 5 failures per minute (or the global limit when that is lower) — a person who mistypes a few times is
 * never stopped; a single address needs two windows to spend one window's global budget.
 */
import { userCodeSpace } from './codes.ts';

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
 * P(an attacker guesses any of `liveCodes` live codes of `codeLength` letters within one code lifetime)
 * ≈ R·T·N / 20^L, where R is the global failure budget per second. Capped at 1.
 */
export function guessProbability(
  globalPerMinute: number,
  ttlSeconds: number,
  liveCodes: number,
  codeLength: number,
): number {
  return Math.min(1, ((globalPerMinute / 60) * ttlSeconds * liveCodes) / userCodeSpace(codeLength));
}

/** The most live codes of `codeLength` letters for which {@link guessProbability} stays below {@link GUESS_TARGET}. */
export function maxLiveCodes(globalPerMinute: number, ttlSeconds: number, codeLength: number): number {
  return Math.ceil((GUESS_TARGET * userCodeSpace(codeLength)) / ((globalPerMinute / 60) * ttlSeconds)) - 1;
}

/** The largest global failures-per-minute that keeps {@link guessProbability} ≤ {@link GUESS_TARGET}; at least 1. */
export function derivedGlobalPerMinute(ttlSeconds: number, liveCodes: number, codeLength: number): number {
  const space = userCodeSpace(codeLength);
  return Math.max(1, Math.floor((GUESS_TARGET * space * 60) / (ttlSeconds * liveCodes)));
}

/**
 * The limits for a deployment: the configured per-minute values where given, else the derived global limit and
 * {@link DEFAULT_PER_IP_PER_MINUTE} (never above the global one).
 */
export function codeEntryLimits(o: {
  ttlSeconds: number;
  liveCodes: number;
  /** letters per user code (`DEVICEGATE_USER_CODE_LENGTH`) */
  codeLength: number;
  globalPerMinute?: number | undefined;
  perIpPerMinute?: number | undefined;
}): CodeEntryLimits {
  const global = o.globalPerMinute ?? derivedGlobalPerMinute(o.ttlSeconds, o.liveCodes, o.codeLength);
  const perIp = o.perIpPerMinute ?? Math.min(DEFAULT_PER_IP_PER_MINUTE, global);
  return {
    perIp: { max: perIp, windowMs: LIMIT_WINDOW_MS },
    global: { max: global, windowMs: LIMIT_WINDOW_MS },
    requestsPerMinute: FLOOD_REQUESTS_PER_MINUTE,
  };
}
