/**
 * A seeded pseudo-random source (mulberry32), so that a soak's chaos schedule or a fuzz campaign can be replayed
 * from the seed printed on its final line. Not for anything secret.
 */
export interface Rng {
  readonly seed: number;
  /** uniform in [0, 1) */
  next(): number;
  /** an integer in [min, max] */
  int(min: number, max: number): number;
  /** true with probability `p` */
  chance(p: number): boolean;
  pick<T>(items: readonly T[]): T;
  /** a child source whose sequence depends only on this one's seed and `label` (one per device, per campaign) */
  fork(label: string): Rng;
}

export function createRng(seed: number): Rng {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const rng: Rng = {
    seed,
    next,
    int: (min, max) => min + Math.floor(next() * (max - min + 1)),
    chance: (p) => next() < p,
    pick: (items) => {
      if (items.length === 0) throw new Error('pick from an empty list');
      return items[Math.floor(next() * items.length)]!;
    },
    fork: (label) => createRng(hash32(`${seed}:${label}`)),
  };
  return rng;
}

/** FNV-1a of a string, 32 bits. */
function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** Parses `min-max` (or a single number) into a range; for command-line flags such as `--latency 50-250`. */
export function parseRange(text: string, flag: string): { min: number; max: number } {
  const m = /^(\d+(?:\.\d+)?)(?:-(\d+(?:\.\d+)?))?$/.exec(text.trim());
  if (m === null) throw new Error(`${flag}: expected a number or a range like 20-40, got "${text}"`);
  const min = Number(m[1]);
  const max = m[2] === undefined ? min : Number(m[2]);
  if (max < min) throw new Error(`${flag}: ${max} is below ${min}`);
  return { min, max };
}
