import { ROLES, type Role } from '../../../schemas/index.js';
import { hasRole, rolesFromGroups } from '../../platform/auth.js';
import { HttpError } from './errors.js';

/** JWT claims as API Gateway's JWT authorizer hands them over (values flattened to strings, arrays as `[a b]`). */
export type JwtClaims = Readonly<Record<string, string | number | boolean | readonly string[]>>;

/** Who is calling: the name recorded on their commands, and the roles their groups grant. */
export interface Caller {
  readonly id: string;
  readonly roles: readonly Role[];
}

/** The claims that can name a person, most readable first (Cognito access tokens carry `username`, ID tokens the others). */
const IDENTITY_CLAIMS = ['username', 'cognito:username', 'email', 'sub'] as const;

/**
 * The caller from the authorizer's claims. API Gateway has already checked the token; this only refuses a request
 * that reached us without claims at all (a route left without an authorizer, a local call that skipped it).
 */
export function callerFromClaims(claims: JwtClaims | undefined): Caller {
  if (!claims) throw unauthorized('No verified token reached the API; send a bearer token.');
  const id = IDENTITY_CLAIMS.map((name) => claims[name]).find((value): value is string => typeof value === 'string' && value !== '');
  if (!id) throw unauthorized('The token names no user (no username, email or sub claim).');
  return { id, roles: rolesFromGroups(claims['cognito:groups']) };
}

/** 403 unless one of the caller's roles is `needed` or one above it (admin ⊇ engineer ⊇ operator). */
export function requireRole(caller: Caller, needed: Role): void {
  if (hasRole(caller.roles, needed)) return;
  const granting = ROLES.filter((role) => hasRole([role], needed));
  const have = caller.roles.length > 0 ? `your roles are ${caller.roles.join(', ')}` : 'you are in no fleet group';
  throw new HttpError(
    403,
    'FORBIDDEN',
    `This needs the ${needed} role (the ${granting.join(' or ')} group); ${have}.`,
    { requiredRole: needed },
  );
}

function unauthorized(message: string): HttpError {
  return new HttpError(401, 'UNAUTHORIZED', message, null, { 'www-authenticate': 'Bearer' });
}
