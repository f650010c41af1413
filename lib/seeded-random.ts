/**
 * A small seeded generator (mulberry32) of numbers in [0, 1): the same seed gives the same sequence, so a simulated
 * fleet, a benchmark's data or a randomised test's failing order can be replayed. A string seed is hashed (FNV-1a).
 * Not for anything secret.
 */
export function seededRandom(seed: number | string): () => number {
  let state = (typeof seed === 'string' ? fnv1a(seed) : seed) >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}
