/**
 * User codes for bridge mode (RFC 8628 §6.1): L letters of `BCDFGHJKLMNPQRSTVWXZ` (no vowels, so no words; no
 * look-alike pairs such as 0/O or 1/I), L from {@link MIN_USER_CODE_LENGTH} to {@link MAX_USER_CODE_LENGTH}
 * (`DEVICEGATE_USER_CODE_LENGTH`, default 8), shown in groups of four joined by dashes (`XXXX-XXXX`, `XXXX-XXXX-XX`).
 *
 * Input rule (documented in the README): the input is NFKC-normalised (fullwidth `ＷＤＪＢ` becomes `WDJB`), upper-cased,
 * and spaces, dashes and other separators are dropped. What remains must be 8 to 12 letters of the alphabet; anything
 * else — Cyrillic or Greek look-alikes, digits, vowels — makes the input invalid. Look-alikes are never mapped onto
 * Latin letters, so they can never reach another flow's code. A length other than the configured one is simply a code
 * no flow holds.
 */
import { randomInt } from 'node:crypto';

export const USER_CODE_ALPHABET = 'BCDFGHJKLMNPQRSTVWXZ';
/** The shortest code length: 20^8 ≈ 2^34.6 (src/core/limits.ts has the arithmetic). */
export const MIN_USER_CODE_LENGTH = 8;
export const MAX_USER_CODE_LENGTH = 12;
export const DEFAULT_USER_CODE_LENGTH = 8;
/** Longest input looked at; longer input is refused before any normalisation or lookup. */
export const MAX_USER_CODE_INPUT = 64;

/** How many codes of `length` letters there are: 20^length (20^8 ≈ 2^34.6, 20^10 ≈ 2^43.2). */
export function userCodeSpace(length: number): number {
  return USER_CODE_ALPHABET.length ** length;
}

/** A fresh code of `length` letters in canonical form (no dashes), from a CSPRNG. */
export function generateUserCode(length: number): string {
  let code = '';
  for (let i = 0; i < length; i++) code += USER_CODE_ALPHABET[randomInt(USER_CODE_ALPHABET.length)];
  return code;
}

/** `BCDFGHJK` → `BCDF-GHJK`, `BCDFGHJKLM` → `BCDF-GHJK-LM`: groups of four, joined by dashes. */
export function formatUserCode(canonical: string): string {
  return (canonical.match(/.{1,4}/g) ?? []).join('-');
}

/** What an entry field shows before anything is typed: `XXXX-XXXX` for 8 letters. */
export function userCodePlaceholder(length: number): string {
  return formatUserCode('X'.repeat(length));
}

const SEPARATORS = /[\s\p{Pd}\p{Zs}_.·・]/gu;
const CANONICAL = new RegExp(`^[${USER_CODE_ALPHABET}]{${MIN_USER_CODE_LENGTH},${MAX_USER_CODE_LENGTH}}$`);

/** The canonical form of what a person typed, or `undefined` when it cannot be a code. */
export function normalizeUserCode(input: string): string | undefined {
  if (input.length > MAX_USER_CODE_INPUT) return undefined;
  const folded = input.normalize('NFKC').toUpperCase().replace(SEPARATORS, '');
  return CANONICAL.test(folded) ? folded : undefined;
}
