import { describe, expect, it } from 'vitest';
import { matchesAnyFilter, matchesFilter, PROJECTED_RECORD_PATTERNS } from '../../schemas/stream-filters.js';

const record = (image: Record<string, unknown>) => ({ eventName: 'INSERT', dynamodb: { NewImage: image } });

describe('stream filters', () => {
  it('the consumers get events and heads with a new sample, not markers or event-only head rewrites', () => {
    expect(matchesAnyFilter(record({ kind: { S: 'event' }, seq: { N: '3' } }), PROJECTED_RECORD_PATTERNS)).toBe(true);
    expect(matchesAnyFilter(record({ kind: { S: 'head' }, telemetryChanged: { BOOL: true } }), PROJECTED_RECORD_PATTERNS)).toBe(true);
    expect(matchesAnyFilter(record({ kind: { S: 'head' }, telemetryChanged: { BOOL: false } }), PROJECTED_RECORD_PATTERNS)).toBe(false);
    expect(matchesAnyFilter(record({ kind: { S: 'head' } }), PROJECTED_RECORD_PATTERNS)).toBe(false);
    expect(matchesAnyFilter(record({ kind: { S: 'marker' } }), PROJECTED_RECORD_PATTERNS)).toBe(false);
    expect(matchesAnyFilter({ eventName: 'REMOVE', dynamodb: {} }, PROJECTED_RECORD_PATTERNS)).toBe(false);
  });

  it('a value list matches by equality of type and value, an object by every key', () => {
    expect(matchesFilter({ a: { b: 1 } }, { a: { b: [1, 2] } })).toBe(true);
    expect(matchesFilter({ a: { b: '1' } }, { a: { b: [1] } })).toBe(false);
    expect(matchesFilter({ a: { b: 1, c: true } }, { a: { b: [1], c: [false] } })).toBe(false);
    expect(matchesFilter(null, { a: ['x'] })).toBe(false);
    expect(matchesFilter({ a: 'x' }, { a: { b: ['x'] } })).toBe(false);
  });
});
