import type { FieldProblem } from '../../platform/validation.js';

/**
 * Numbers the event log can store. DynamoDB refuses magnitudes below 1e-130 (other than 0), and the SDK's marshaller
 * refuses integers beyond Number.MAX_SAFE_INTEGER (it cannot store them exactly); every double above 2^53 is such an
 * integer. Either failure would come back on every retry, so such a message is rejected here, naming the field, while
 * JSON and the schemas allow it (a load of 5e-324, an uptime of 1e20).
 */
const SMALLEST = 1e-130;

export function unstorableNumbers(value: unknown, path: readonly (string | number)[] = []): FieldProblem[] {
  if (typeof value === 'number') {
    const magnitude = Math.abs(value);
    if (magnitude !== 0 && magnitude < SMALLEST) return [{ field: path.join('.'), message: 'is too close to 0 to store (send 0)' }];
    if (magnitude > Number.MAX_SAFE_INTEGER) {
      return [{ field: path.join('.'), message: `is too large to store (at most ${Number.MAX_SAFE_INTEGER})` }];
    }
    return [];
  }
  if (Array.isArray(value)) return value.flatMap((item, index) => unstorableNumbers(item, [...path, index]));
  if (typeof value === 'object' && value !== null) {
    return Object.entries(value).flatMap(([key, item]) => unstorableNumbers(item, [...path, key]));
  }
  return [];
}
