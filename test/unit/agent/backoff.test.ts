import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { backoffCeiling, backoffDelay, DEFAULT_BACKOFF } from '../../../agent/core/backoff.js';

const options = { baseMs: 1_000, capMs: 60_000 };

describe('backoff with full jitter', () => {
  it('doubles the ceiling with each attempt, starting at the base', () => {
    expect([0, 1, 2, 3, 4, 5].map((attempt) => backoffCeiling(attempt, options))).toEqual([
      1_000, 2_000, 4_000, 8_000, 16_000, 32_000,
    ]);
  });

  it('never lets the ceiling pass the cap, even for attempts where 2^n overflows', () => {
    expect(backoffCeiling(6, options)).toBe(60_000);
    expect(backoffCeiling(50, options)).toBe(60_000);
    expect(backoffCeiling(5_000, options)).toBe(60_000);
  });

  it('draws the delay uniformly in [0, ceiling]: the random source picks where', () => {
    expect(backoffDelay(3, options, () => 0)).toBe(0);
    expect(backoffDelay(3, options, () => 0.5)).toBe(4_000);
    expect(backoffDelay(3, options, () => 0.999_999_9)).toBe(8_000);
  });

  it('clamps a random source that misbehaves instead of going negative or over the cap', () => {
    expect(backoffDelay(2, options, () => -3)).toBe(0);
    expect(backoffDelay(2, options, () => 7)).toBe(4_000);
    expect(backoffDelay(2, options, () => Number.NaN)).toBe(0);
  });

  it('refuses nonsense attempts and options with a message naming them', () => {
    expect(() => backoffCeiling(-1, options)).toThrow(/attempt/);
    expect(() => backoffCeiling(1.5, options)).toThrow(/attempt/);
    expect(() => backoffCeiling(0, { baseMs: 0, capMs: 10 })).toThrow(/baseMs/);
    expect(() => backoffCeiling(0, { baseMs: 100, capMs: 10 })).toThrow(/capMs/);
  });

  it('property: every delay lies in [0, min(cap, base·2^attempt)] and the ceiling never shrinks', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 200 }),
        fc.integer({ min: 1, max: 10_000 }),
        fc.integer({ min: 0, max: 1_000_000 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (attempt, baseMs, extra, draw) => {
          const bounds = { baseMs, capMs: baseMs + extra };
          const ceiling = backoffCeiling(attempt, bounds);
          const delay = backoffDelay(attempt, bounds, () => draw);
          expect(ceiling).toBeLessThanOrEqual(bounds.capMs);
          expect(ceiling).toBe(Math.min(bounds.capMs, baseMs * 2 ** attempt));
          expect(delay).toBeGreaterThanOrEqual(0);
          expect(delay).toBeLessThanOrEqual(ceiling);
          expect(backoffCeiling(attempt + 1, bounds)).toBeGreaterThanOrEqual(ceiling);
        },
      ),
    );
  });

  it('with Math.random, a thousand robots retrying at once spread over the whole window', () => {
    const delays = Array.from({ length: 1_000 }, () => backoffDelay(4, DEFAULT_BACKOFF));
    const ceiling = backoffCeiling(4, DEFAULT_BACKOFF);
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...delays)).toBeLessThanOrEqual(ceiling);
    // Each quarter of the window gets some robots (the chance that one stays empty is about 4 · 0.75^1000).
    const quarters = new Set(delays.map((delay) => Math.min(3, Math.floor((delay / ceiling) * 4))));
    expect(quarters.size).toBe(4);
  });
});
