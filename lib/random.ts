/**
 * The one seeded-random module of the project (library, benchmarks and tests):
 * mulberry32 generators seeded with a hash of what is being decided, so a
 * choice depends only on its own inputs, never on the order of the calls.
 */

/** 32-bit FNV-1a over the UTF-16 code units of the parts, joined by U+0000. */
export function hash32(...parts: readonly (string | number)[]): number {
  let h = 0x811c9dc5;
  let first = true;
  for (const part of parts) {
    if (!first) h = Math.imul(h ^ 0, 0x01000193);
    first = false;
    const s = String(part);
    for (let i = 0; i < s.length; i++) {
      h ^= s.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
  }
  // Final avalanche (murmur3 fmix32), so that nearby inputs give unrelated seeds.
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export type Random = () => number;

/** mulberry32: a uniform float in [0, 1) per call. */
export function mulberry32(seed: number): Random {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A generator seeded by a hash of the parts. */
export function seeded(...parts: readonly (string | number)[]): Random {
  return mulberry32(hash32(...parts));
}

/** An integer in [0, n). */
export function randomInt(random: Random, n: number): number {
  return Math.floor(random() * n);
}

/** Fisher-Yates shuffle of a copy. */
export function shuffled<T>(items: readonly T[], random: Random): T[] {
  const out = items.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = randomInt(random, i + 1);
    const tmp = out[i] as T;
    out[i] = out[j] as T;
    out[j] = tmp;
  }
  return out;
}

/** k distinct items, in random order. */
export function sample<T>(items: readonly T[], k: number, random: Random): T[] {
  return shuffled(items, random).slice(0, Math.max(0, k));
}
