import { z } from 'zod';
import { ROLES } from '../../../schemas/index.js';
import type { Principal } from '../../platform/auth.js';

/**
 * How the `$connect` authorizer hands the user to the `$connect` route: API Gateway passes the policy's `context`
 * through, and its values must be strings, numbers or booleans, so roles travel comma-separated.
 */
export type AuthorizerContext = { readonly userId: string; readonly roles: string };

export function toAuthorizerContext(principal: Principal): AuthorizerContext {
  return { userId: principal.userId, roles: principal.roles.join(',') };
}

const Context = z.object({ userId: z.string().min(1), roles: z.string() });

/** The principal the authorizer admitted; null when the route was reached without one (a misconfigured route). */
export function fromAuthorizerContext(context: unknown): Principal | null {
  const parsed = Context.safeParse(context);
  if (!parsed.success) return null;
  // Role names the authorizer itself wrote (not the user's groups): each must be one of ROLES exactly.
  const names = parsed.data.roles.split(',');
  return { userId: parsed.data.userId, roles: ROLES.filter((role) => names.includes(role)) };
}
