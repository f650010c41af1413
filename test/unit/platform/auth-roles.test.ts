import { describe, expect, it } from 'vitest';
import { hasRole, rolesFromGroups } from '../../../functions/platform/auth.js';

describe('rolesFromGroups', () => {
  it('reads the fleet roles from the token claim, API Gateway’s flattened claim, or a comma list', () => {
    // Given the same groups in each form a caller may hold them, when read, then the same roles come out
    expect(rolesFromGroups(['admin', 'beta-testers', 'operator'])).toEqual(['operator', 'admin']);
    expect(rolesFromGroups('[admin beta-testers operator]')).toEqual(['operator', 'admin']);
    expect(rolesFromGroups('operator,admin')).toEqual(['operator', 'admin']);
    expect(rolesFromGroups('[engineer]')).toEqual(['engineer']);
  });

  it('gives no role for a missing or malformed claim, or unknown groups only', () => {
    for (const claim of [undefined, null, 42, {}, [], '', '[]', ['Admin', 'operators'], [7, null]]) {
      expect(rolesFromGroups(claim)).toEqual([]);
    }
  });
});

describe('hasRole', () => {
  it('lets a higher role do what a lower one may, and not the other way round', () => {
    expect(hasRole(['operator'], 'operator')).toBe(true);
    expect(hasRole(['operator'], 'engineer')).toBe(false);
    expect(hasRole(['engineer'], 'operator')).toBe(true);
    expect(hasRole(['engineer'], 'admin')).toBe(false);
    expect(hasRole(['admin'], 'engineer')).toBe(true);
    expect(hasRole([], 'operator')).toBe(false);
  });
});
