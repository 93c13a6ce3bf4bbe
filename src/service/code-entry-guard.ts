/**
 * The failed-entry guard of the code-entry page (RFC 8628 §5.1): how many wrong user codes a client address (IPv6:
 * its /64) and everyone together may enter per fixed window. The limits and why they bound the guessing probability
 * are in src/core/limits.ts; the counters are an {@link AttemptCounter} (per instance in memory, or shared in Redis).
 *
 * An entry is counted before its code is looked up, so concurrent guesses cannot slip past the limit, and taken back
 * when the code was usable: what stays counted is the failures. A success never resets a counter.
 */
import { isIPv6 } from 'node:net';
import type { Clock } from '../core/clock.ts';
import type { CodeEntryLimits, WindowLimit } from '../core/limits.ts';
import type { AttemptCounter } from '../store/types.ts';

export type Attempt =
  /** a limit is reached: nothing may be looked up; the client may try again after `retryAfter` seconds */
  | { limited: true; retryAfter: number }
  /** counted as a failure until {@link Attempt.succeeded} takes it back (the code was usable, or not looked up) */
  | { limited: false; succeeded(): Promise<void> };

export interface CodeEntryGuardDeps {
  counter: AttemptCounter;
  limits: Pick<CodeEntryLimits, 'perIp' | 'global'>;
  clock: Clock;
}

interface Slot {
  key: string;
  limit: WindowLimit;
  /** twice the window, so a counter outlives the window it counts */
  ttlMs: number;
  /** when the window ends (ms) */
  endsAt: number;
}

export class CodeEntryGuard {
  readonly #counter: AttemptCounter;
  readonly #limits: CodeEntryGuardDeps['limits'];
  readonly #clock: Clock;

  constructor(deps: CodeEntryGuardDeps) {
    this.#counter = deps.counter;
    this.#limits = deps.limits;
    this.#clock = deps.clock;
  }

  /**
   * Counts one code entry from `clientIp` against the per-address and the global limit. When either is over its
   * `max`, takes the entry back (a refused entry looks nothing up, so it does not use the guessing budget) and
   * answers `limited` with the seconds until the later of the reached windows ends. A counter failure
   * (`UnavailableError`) is rethrown with nothing left counted.
   */
  async begin(clientIp: string): Promise<Attempt> {
    const now = this.#clock.now();
    const slots = [
      slot(`fail:ip:${addressBlock(clientIp)}`, this.#limits.perIp, now),
      slot('fail:global', this.#limits.global, now),
    ];
    const added: Slot[] = [];
    const undo = async () => {
      for (const s of added) await this.#counter.add(s.key, -1, s.ttlMs);
    };
    let retryAfter = 0;
    try {
      for (const s of slots) {
        const count = await this.#counter.add(s.key, 1, s.ttlMs);
        added.push(s);
        if (count > s.limit.max) retryAfter = Math.max(retryAfter, Math.ceil((s.endsAt - now) / 1000));
      }
    } catch (err) {
      await undo().catch(() => undefined);
      throw err;
    }
    if (retryAfter > 0) {
      await undo();
      return { limited: true, retryAfter };
    }
    return { limited: false, succeeded: undo };
  }
}

function slot(name: string, limit: WindowLimit, now: number): Slot {
  const window = Math.floor(now / limit.windowMs);
  return {
    key: `${name}:${window}`,
    limit,
    ttlMs: 2 * limit.windowMs,
    endsAt: (window + 1) * limit.windowMs,
  };
}

/**
 * The address a limit counts: IPv4 as given, an IPv4-mapped IPv6 address as its IPv4, any other IPv6 address as the
 * start of its /64 (one subscriber usually holds a whole /64), in RFC 5952 form — the same keys as the flood guard's
 * `normalizeIP` (@fastify/rate-limit), so both limits see one client alike.
 */
export function addressBlock(ip: string): string {
  if (!isIPv6(ip)) return ip.toLowerCase();
  const groups = ipv6Groups(ip.replace(/%.*$/, ''));
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    const [hi = 0, lo = 0] = groups.slice(6);
    return [hi >> 8, hi & 0xff, lo >> 8, lo & 0xff].join('.');
  }
  return rfc5952([...groups.slice(0, 4), 0, 0, 0, 0]);
}

/** The eight 16-bit groups of a valid IPv6 address (`::` expanded, a dotted IPv4 tail turned into two groups). */
function ipv6Groups(ip: string): number[] {
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(ip);
  const text = dotted === null ? ip : ip.slice(0, dotted.index) + '0:0';
  const [head = '', tail] = text.split('::');
  const parse = (part: string) => (part === '' ? [] : part.split(':').map((g) => parseInt(g, 16)));
  const left = parse(head);
  const right = tail === undefined ? [] : parse(tail);
  const groups = [...left, ...Array<number>(8 - left.length - right.length).fill(0), ...right];
  if (dotted !== null) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    groups[6] = (a << 8) | b;
    groups[7] = (c << 8) | d;
  }
  return groups;
}

/** RFC 5952 §4: lower-case hex without leading zeros, the first longest run of two or more zero groups as `::`. */
function rfc5952(groups: number[]): string {
  let best = { at: -1, length: 1 };
  for (let i = 0; i < groups.length;) {
    let j = i;
    while (groups[j] === 0) j++;
    if (j - i > best.length) best = { at: i, length: j - i };
    i = j === i ? i + 1 : j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best.at < 0) return hex.join(':');
  return `${hex.slice(0, best.at).join(':')}::${hex.slice(best.at + best.length).join(':')}`;
}
