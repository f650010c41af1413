import { JwtVerifier } from 'aws-jwt-verify';
import type { Jwks } from 'aws-jwt-verify/jwk';
import type { JwtPayload } from 'aws-jwt-verify/jwt-model';

/**
 * API Gateway's JWT authorizer (HTTP APIs), for the local cloud and tests. Like the real one it takes the token from
 * the Authorization header (with or without `Bearer `), checks the RSA signature against the issuer's JWKS (by `kid`),
 * `iss`, `aud` or `client_id` against the audiences, `exp`, `nbf` and `iat`, and the route's scopes if it has any.
 * A request it refuses never reaches the integration: the caller gets 401 `{"message":"Unauthorized"}` (403
 * `{"message":"Forbidden"}` for missing scopes). An accepted request carries the claims flattened the way API Gateway
 * hands them to Lambda: every value a string, arrays as `[a b]`, null claims left out.
 */
export interface JwtAuthorizerOptions {
  /** Exactly the token's `iss`, e.g. `https://cognito-idp.<region>.amazonaws.com/<userPoolId>`. */
  readonly issuer: string;
  /** Accepted `aud` (ID tokens) or `client_id` (Cognito access tokens) values: the app client ids. */
  readonly audience: readonly string[];
  /** Where the signing keys are; Cognito's location under the issuer by default. */
  readonly jwksUri?: string;
}

export interface AuthorizerResponse {
  readonly statusCode: 401 | 403;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
}

export type AuthorizerResult =
  | { readonly authorized: true; readonly claims: Record<string, string>; readonly scopes: string[] | null }
  | { readonly authorized: false; readonly reason: string; readonly response: AuthorizerResponse };

export class JwtAuthorizer {
  private readonly verifier;

  constructor(options: JwtAuthorizerOptions) {
    // JwtVerifier is what aws-jwt-verify 5 calls JwtRsaVerifier (the old name is a deprecated alias of it).
    this.verifier = JwtVerifier.create({
      issuer: options.issuer,
      jwksUri: options.jwksUri ?? `${options.issuer}/.well-known/jwks.json`,
      // aws-jwt-verify checks only `aud`; API Gateway also accepts the audience in `client_id` (Cognito access
      // tokens have no `aud`), so the audience check is done in the custom check below.
      audience: null,
      customJwtCheck: ({ header, payload }) => checkApiGatewayRules(header.alg, payload, options.audience),
    });
  }

  /** Gives the verifier the issuer's keys up front (tests, or an issuer the local cloud cannot reach). */
  cacheJwks(jwks: Jwks): void {
    this.verifier.cacheJwks(jwks);
  }

  /**
   * Checks a request's token. `routeScopes` are the route's authorization scopes (none by default, as on every
   * /api/v2 route); with scopes, the token must carry one of them in `scope` or `scp`.
   */
  async authorize(
    headers: Readonly<Record<string, string | undefined>>,
    routeScopes: readonly string[] = [],
  ): Promise<AuthorizerResult> {
    const token = bearerToken(headers);
    if (!token) return refuse(401, 'no token in the Authorization header');
    let payload: JwtPayload;
    try {
      payload = await this.verifier.verify(token);
    } catch (error) {
      return refuse(401, (error as Error).message);
    }
    const tokenScopes = scopesOf(payload);
    if (routeScopes.length > 0 && !routeScopes.some((scope) => tokenScopes.includes(scope))) {
      return refuse(403, `the token has none of the route's scopes (${routeScopes.join(', ')})`);
    }
    // API Gateway fills `scopes` only on routes that declare authorization scopes.
    return { authorized: true, claims: flattenClaims(payload), scopes: routeScopes.length > 0 ? tokenScopes : null };
  }
}

function checkApiGatewayRules(algorithm: string | undefined, payload: JwtPayload, audience: readonly string[]): void {
  const now = Date.now() / 1000;
  // API Gateway's JWT authorizers take RSA signatures only; aws-jwt-verify would also accept EC and EdDSA.
  if (!algorithm || !/^RS(256|384|512)$/.test(algorithm)) throw new Error(`unsupported signing algorithm ${algorithm}`);
  if (typeof payload.exp !== 'number') throw new Error('the token has no exp claim');
  if (typeof payload.iat === 'number' && payload.iat > now) throw new Error('the token was issued in the future');
  const audiences = [payload.aud, payload.client_id].flat().filter((value): value is string => typeof value === 'string');
  if (!audiences.some((value) => audience.includes(value))) {
    throw new Error('neither aud nor client_id is one of the authorizer audiences');
  }
}

function bearerToken(headers: Readonly<Record<string, string | undefined>>): string | null {
  const header = Object.entries(headers).find(([name]) => name.toLowerCase() === 'authorization')?.[1]?.trim();
  if (!header) return null;
  const token = header.replace(/^Bearer\s+/i, '').trim();
  return token === '' ? null : token;
}

function scopesOf(payload: JwtPayload): string[] {
  const claim = payload.scope ?? payload.scp;
  if (Array.isArray(claim)) return claim.filter((scope): scope is string => typeof scope === 'string');
  return typeof claim === 'string' ? claim.split(' ').filter((scope) => scope !== '') : [];
}

/** Claims as API Gateway passes them to the integration (payload 2.0): strings only, arrays as `[a b]`. */
export function flattenClaims(payload: JwtPayload): Record<string, string> {
  const claims: Record<string, string> = {};
  for (const [name, value] of Object.entries(payload)) {
    if (value === null || value === undefined) continue;
    if (Array.isArray(value)) claims[name] = `[${value.map((item) => (typeof item === 'string' ? item : JSON.stringify(item))).join(' ')}]`;
    else if (typeof value === 'object') claims[name] = JSON.stringify(value);
    else claims[name] = String(value);
  }
  return claims;
}

function refuse(statusCode: 401 | 403, reason: string): AuthorizerResult {
  const message = statusCode === 401 ? 'Unauthorized' : 'Forbidden';
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  // RFC 6750: a refused bearer token says so in WWW-Authenticate.
  if (statusCode === 401) headers['www-authenticate'] = 'Bearer';
  return { authorized: false, reason, response: { statusCode, headers, body: JSON.stringify({ message }) } };
}
