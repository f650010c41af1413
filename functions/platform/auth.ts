import { JwtVerifier } from 'aws-jwt-verify';
import { SimpleFetcher, type Fetcher } from 'aws-jwt-verify/https';
import { SimpleJwksCache } from 'aws-jwt-verify/jwk';
import type { JwtPayload } from 'aws-jwt-verify/jwt-model';
import { z } from 'zod';
import { ROLES, type Role } from '../../schemas/index.js';

/**
 * Bearer token verification and roles, shared by the HTTP API and the WebSocket authorizer. Tokens come from Cognito
 * in AWS (id tokens carry the app client in `aud`, access tokens in `client_id`) or from the local cloud's issuer;
 * roles are the user's groups.
 */

/** Who a verified token speaks for. */
export interface Principal {
  readonly userId: string;
  readonly roles: readonly Role[];
}

/** Any reason a token is not accepted; the caller shows nothing of it to the client. */
export class InvalidToken extends Error {
  override readonly name = 'InvalidToken';
}

const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);
const isLoopback = (url: URL) => LOOPBACK_HOSTS.has(url.hostname);

/** HTTPS everywhere, except a JWKS on this very machine (the local cloud's issuer), where no one can sit in between. */
const jwksUrl = z.url().refine((value) => {
  const url = new URL(value);
  return url.protocol === 'https:' || (url.protocol === 'http:' && isLoopback(url));
}, 'must be an https URL (http only on localhost)');

export const AuthEnv = z.object({
  JWT_ISSUER: z.url(),
  /** The app client id: an id token's `aud`, an access token's `client_id`. */
  JWT_AUDIENCE: z.string().min(1),
  /** Defaults to `<issuer>/.well-known/jwks.json`, where Cognito publishes its keys. */
  JWKS_URI: jwksUrl.optional(),
});
export type AuthEnv = z.infer<typeof AuthEnv>;

/** Role ranks: an engineer can do what an operator can, an admin everything. */
const RANK: Readonly<Record<Role, number>> = { operator: 1, engineer: 2, admin: 3 };

/**
 * The fleet roles among a user's groups, in the order of ROLES: exact group names only. Takes the `cognito:groups`
 * claim as the token has it (an array: the WebSocket authorizer verifies the token itself) or as API Gateway's JWT
 * authorizer passes it to the HTTP integration (`[operator engineer]`). Unknown groups and malformed claims give no
 * role.
 */
export function rolesFromGroups(groups: unknown): Role[] {
  const names = Array.isArray(groups) ? groups : typeof groups === 'string' ? flattenedGroups(groups) : [];
  return ROLES.filter((role) => names.includes(role));
}

/**
 * API Gateway's JWT authorizer flattens an array claim into one string: the items joined by single spaces inside one
 * pair of brackets. Cognito group names contain no white space (but may contain commas and brackets), so splitting
 * on the spaces gives back exactly the names; a group called `fleet-ops,admin` or `[admin]` is not `admin`.
 */
function flattenedGroups(claim: string): string[] {
  if (!claim.startsWith('[') || !claim.endsWith(']')) return [];
  const inner = claim.slice(1, -1);
  return inner === '' ? [] : inner.split(' ');
}

/** Whether the roles allow what `needed` allows (a higher role includes the lower ones). */
export function hasRole(roles: readonly Role[], needed: Role): boolean {
  return roles.some((role) => RANK[role] >= RANK[needed]);
}

/** aws-jwt-verify fetches over HTTPS only; a loopback http JWKS (see `jwksUrl`) goes through fetch instead. */
class LoopbackAwareFetcher implements Fetcher {
  private readonly https = new SimpleFetcher();

  async fetch(uri: string, requestOptions?: Record<string, unknown>, data?: ArrayBuffer): Promise<ArrayBuffer> {
    const url = new URL(uri);
    if (url.protocol !== 'http:' || !isLoopback(url)) return this.https.fetch(uri, requestOptions, data);
    const response = await fetch(url, { signal: AbortSignal.timeout(3_000) });
    if (!response.ok) throw new Error(`JWKS ${uri} answered ${response.status}`);
    return response.arrayBuffer();
  }
}

function audienceMatches(payload: JwtPayload, audience: string): boolean {
  const aud = payload.aud;
  if (aud === audience || (Array.isArray(aud) && aud.includes(audience))) return true;
  return payload.client_id === audience;
}

export type TokenVerifier = (token: string) => Promise<Principal>;

/**
 * A verifier for the issuer's tokens: signature (keys fetched once and cached), expiry, issuer, and the audience in
 * either `aud` or `client_id`. Rejections throw InvalidToken with the library's error as `cause`.
 */
export function createTokenVerifier(env: AuthEnv): TokenVerifier {
  const verifier = JwtVerifier.create(
    {
      // Exactly the token's `iss`; only the default key location is built from it.
      issuer: env.JWT_ISSUER,
      jwksUri: env.JWKS_URI ?? `${env.JWT_ISSUER.replace(/\/+$/, '')}/.well-known/jwks.json`,
      // Checked below instead: Cognito access tokens have no `aud`.
      audience: null,
      customJwtCheck: ({ payload }) => {
        // The library checks `exp` only when present; a token that never expires is not one we hand out.
        if (typeof payload.exp !== 'number') throw new Error('token has no expiry');
        if (!audienceMatches(payload, env.JWT_AUDIENCE)) throw new Error('token is not for this audience');
        if (payload.token_use !== undefined && payload.token_use !== 'id' && payload.token_use !== 'access') {
          throw new Error('token_use must be id or access');
        }
      },
    },
    { jwksCache: new SimpleJwksCache({ fetcher: new LoopbackAwareFetcher() }) },
  );
  return async (token) => {
    let payload: JwtPayload;
    try {
      payload = await verifier.verify(token);
    } catch (error) {
      throw new InvalidToken('token rejected', { cause: error });
    }
    if (typeof payload.sub !== 'string' || payload.sub.length === 0) throw new InvalidToken('token has no subject');
    return { userId: payload.sub, roles: rolesFromGroups(payload['cognito:groups']) };
  };
}
