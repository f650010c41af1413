import type { APIGatewayAuthorizerResult } from 'aws-lambda';

/**
 * Pure rules of API Gateway's `$connect` REQUEST authorizer: which identity sources it reads, and what an
 * authorizer's answer means.
 *
 * Invariants: an identity source is `route.request.querystring.<name>` or `route.request.header.<name>` (header names
 * compared lower-case); a policy allows only if some statement applies to `execute-api:Invoke` on the method ARN
 * with Allow and none that applies says Deny (an explicit Deny wins); an answer API Gateway cannot use (no string
 * principalId, no Statement list, a nested context value) is a `problem`, never an allow.
 */

export interface IdentitySource {
  readonly in: 'querystring' | 'header';
  readonly name: string;
  readonly expression: string;
}

export function parseIdentitySource(expression: string): IdentitySource {
  const match = /^route\.request\.(querystring|header)\.(.+)$/.exec(expression);
  if (!match) throw new Error(`identity source ${JSON.stringify(expression)} is not route.request.querystring.<name> or route.request.header.<name>`);
  const where = match[1] as 'querystring' | 'header';
  const name = match[2] as string;
  return { in: where, name: where === 'header' ? name.toLowerCase() : name, expression };
}

/** Whether the policy allows `execute-api:Invoke` on the method (an explicit Deny wins), or what is wrong with it. */
export type PolicyVerdict =
  | { readonly allowed: boolean; readonly principalId: string; readonly context: Record<string, unknown>; readonly problem?: undefined }
  | { readonly allowed: false; readonly problem: string };

export function policyVerdict(result: unknown, methodArn: string): PolicyVerdict {
  const policy = result as Partial<APIGatewayAuthorizerResult> | null;
  if (!policy || typeof policy !== 'object') return { allowed: false, problem: 'the answer is not an object' };
  if (typeof policy.principalId !== 'string') return { allowed: false, problem: 'principalId is not a string' };
  const statements = policy.policyDocument?.Statement;
  if (!Array.isArray(statements)) return { allowed: false, problem: 'policyDocument.Statement is not a list' };
  if (policy.context !== undefined && policy.context !== null) {
    if (typeof policy.context !== 'object') return { allowed: false, problem: 'context is not an object' };
    for (const [name, value] of Object.entries(policy.context)) {
      if (!['string', 'number', 'boolean'].includes(typeof value)) {
        return { allowed: false, problem: `context.${name} is not a string, number or boolean` };
      }
    }
  }
  let allowed = false;
  const verdict = (allowed: boolean): PolicyVerdict => ({
    allowed,
    principalId: policy.principalId as string,
    context: { ...(policy.context ?? {}) },
  });
  for (const statement of statements as unknown as Record<string, unknown>[]) {
    const actions = [statement.Action].flat();
    const resources = [statement.Resource].flat();
    const applies =
      actions.some((action) => typeof action === 'string' && wildcardMatch(action, 'execute-api:Invoke')) &&
      resources.some((resource) => typeof resource === 'string' && wildcardMatch(resource, methodArn));
    if (!applies) continue;
    if (statement.Effect === 'Deny') return verdict(false);
    if (statement.Effect === 'Allow') allowed = true;
  }
  return verdict(allowed);
}

function wildcardMatch(pattern: string, value: string): boolean {
  const expression = pattern.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*');
  return new RegExp(`^${expression}$`, 'i').test(value);
}
