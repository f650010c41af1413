import { describe, expect, it } from 'vitest';
import { hasRole, rolesFromGroups } from '../../../functions/platform/auth.js';

describe('rolesFromGroups', () => {
  it('reads the fleet roles from the token claim and from API Gateway’s flattened claim', () => {
    // Given the same groups in each form a caller may hold them, when read, then the same roles come out
    expect(rolesFromGroups(['admin', 'beta-testers', 'operator'])).toEqual(['operator', 'admin']);
    expect(rolesFromGroups('[admin beta-testers operator]')).toEqual(['operator', 'admin']);
    expect(rolesFromGroups('[engineer]')).toEqual(['engineer']);
  });

  it('grants a role only for a group of exactly that name: commas and brackets are part of a name', () => {
    // Cognito group names may hold commas and brackets (not white space); API Gateway joins the names with spaces.
    for (const groups of [['fleet-ops,admin'], ['[admin]'], ['admin]'], ['[engineer'], ['operator,'], ['Admin']]) {
      expect(rolesFromGroups(groups), JSON.stringify(groups)).toEqual([]);
      expect(rolesFromGroups(`[${groups.join(' ')}]`), `flattened ${JSON.stringify(groups)}`).toEqual([]);
    }
    expect(rolesFromGroups('[fleet-ops,admin operator]')).toEqual(['operator']);
    // Not API Gateway's form (no brackets): no role rather than a guess.
    expect(rolesFromGroups('operator,admin')).toEqual([]);
    expect(rolesFromGroups('admin')).toEqual([]);
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
