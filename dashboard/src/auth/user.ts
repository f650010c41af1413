import type { Role } from '../../../schemas/index.js';
import type { SignedInUser } from '../contracts.js';

/** The fleet roles, most powerful first (schemas/api.ts ROLES, without importing zod into the page). */
export const ROLES_BY_POWER: readonly Role[] = ['admin', 'engineer', 'operator'];

/** The most powerful fleet role among Cognito groups; other groups are ignored; null when there is none. */
export function roleOf(groups: readonly string[]): Role | null {
  return ROLES_BY_POWER.find((role) => groups.includes(role)) ?? null;
}

/**
 * The user of an id token's claims: `cognito:username` (Cognito) or `username`, else `email`, else `sub`;
 * `cognito:groups` (an array, or one string as some issuers send a single group).
 */
export function userFromClaims(claims: Readonly<Record<string, unknown>>): SignedInUser {
  const name = [claims['cognito:username'], claims['username'], claims['email'], claims['sub']].find(
    (value): value is string => typeof value === 'string' && value.length > 0,
  );
  const rawGroups = claims['cognito:groups'];
  const groups = Array.isArray(rawGroups)
    ? rawGroups.filter((group): group is string => typeof group === 'string')
    : typeof rawGroups === 'string'
      ? [rawGroups]
      : [];
  return { username: name ?? 'unknown user', groups, role: roleOf(groups) };
}
