/**
 * User codes for bridge mode (RFC 8628 §6.1): 8 letters of `BCDFGHJKLMNPQRSTVWXZ` (no vowels, so no words; no
 * look-alike pairs such as 0/O or 1/I), shown as `XXXX-XXXX`.
 *
 * Input rule (documented in the README): the input is NFKC-normalised (fullwidth `ＷＤＪＢ` becomes `WDJB`), upper-cased,
 * and spaces, dashes and other separators are dropped. What remains must be exactly 8 letters of the alphabet;
 * anything else — Cyrillic or Greek look-alikes, digits, vowels — makes the input invalid. Look-alikes are never
 * mapped onto Latin letters, so they can never reach another flow's code.
 */
import { randomInt } from 'node:crypto';

export const USER_CODE_ALPHABET = 'BCDFGHJKLMNPQRSTVWXZ';
export const USER_CODE_LENGTH = 8;
/** Longest input looked at; longer input is refused before any normalisation or lookup. */
export const MAX_USER_CODE_INPUT = 64;

/** log2(20^8) ≈ 34.58 bits. */
export const USER_CODE_SPACE = USER_CODE_ALPHABET.length ** USER_CODE_LENGTH;

/** A fresh code in canonical form (8 letters, no dash), from a CSPRNG. */
export function generateUserCode(): string {
  let code = '';
  for (let i = 0; i < USER_CODE_LENGTH; i++) code += USER_CODE_ALPHABET[randomInt(USER_CODE_ALPHABET.length)];
  return code;
}

/** `BCDFGHJK` → `BCDF-GHJK`. */
export function formatUserCode(canonical: string): string {
  return `${canonical.slice(0, 4)}-${canonical.slice(4)}`;
}

const SEPARATORS = /[\s\p{Pd}\p{Zs}_.·・]/gu;
const CANONICAL = new RegExp(`^[${USER_CODE_ALPHABET}]{${USER_CODE_LENGTH}}$`);

/** The canonical form of what a person typed, or `undefined` when it cannot be a code. */
export function normalizeUserCode(input: string): string | undefined {
  if (input.length > MAX_USER_CODE_INPUT) return undefined;
  const folded = input.normalize('NFKC').toUpperCase().replace(SEPARATORS, '');
  return CANONICAL.test(folded) ? folded : undefined;
}
