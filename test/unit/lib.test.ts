import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { assertNever } from '../../lib/assert-never.js';
import { describeError } from '../../lib/describe-error.js';
import { seededRandom } from '../../lib/seeded-random.js';

describe('describeError', () => {
  it('names an error by its class when the class says more than "Error"', () => {
    expect(describeError(new Error('boom'))).toBe('boom');
    expect(describeError(new TypeError('not a function'))).toBe('TypeError: not a function');
  });

  it('lists a validation error field by field', () => {
    const parsed = z.object({ a: z.number(), b: z.object({ c: z.string() }) }).safeParse({ a: 'x', b: { c: 1 } });
    expect(parsed.success).toBe(false);
    expect(describeError(parsed.error)).toMatch(/^a: .+; b\.c: .+$/);
  });

  it('reads the AWS CRT error objects, strings and anything else', () => {
    expect(describeError({ error_name: 'AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE', message: 'TLS handshake failed' })).toBe(
      'AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE: TLS handshake failed',
    );
    expect(describeError({ error_name: 'AWS_ERROR_MQTT_TIMEOUT' })).toBe('AWS_ERROR_MQTT_TIMEOUT');
    expect(describeError('plain')).toBe('plain');
    expect(describeError({ code: 7 })).toBe('{"code":7}');
    expect(describeError(undefined)).toBe('undefined');
  });
});

describe('seededRandom', () => {
  it('repeats its sequence for a seed, numeric or text, and differs between seeds', () => {
    const take = (next: () => number) => Array.from({ length: 5 }, next);
    expect(take(seededRandom(42))).toEqual(take(seededRandom(42)));
    expect(take(seededRandom('lekiwi-LK0001'))).toEqual(take(seededRandom('lekiwi-LK0001')));
    expect(take(seededRandom(42))).not.toEqual(take(seededRandom(43)));
    expect(take(seededRandom('lekiwi-LK0001'))).not.toEqual(take(seededRandom('lekiwi-LK0002')));
  });

  it('stays in [0, 1)', () => {
    const next = seededRandom(7);
    for (let i = 0; i < 10_000; i++) {
      const value = next();
      expect(value >= 0 && value < 1).toBe(true);
    }
  });
});

describe('assertNever', () => {
  it('throws with the value it was not meant to see', () => {
    expect(() => assertNever('surprise' as never)).toThrow('Unexpected value: "surprise"');
  });
});
