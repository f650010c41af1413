/**
 * Reading (not verifying) a JWT's payload: the API verifies every token; the page only needs the user's name and
 * groups for what it shows, and `exp` to refresh in time.
 */

export class MalformedTokenError extends Error {
  override readonly name = 'MalformedTokenError';
}

export function decodeJwtPayload(token: string): Record<string, unknown> {
  const parts = token.split('.');
  if (parts.length !== 3 || !parts[1]) throw new MalformedTokenError('The sign-in returned a token that is not a JWT (header.payload.signature)');
  let json: unknown;
  try {
    const base64 = parts[1].replace(/-/g, '+').replace(/_/g, '/');
    const binary = atob(base64 + '='.repeat((4 - (base64.length % 4)) % 4));
    const bytes = Uint8Array.from(binary, (char) => char.charCodeAt(0));
    json = JSON.parse(new TextDecoder().decode(bytes));
  } catch (error) {
    throw new MalformedTokenError(`The sign-in returned a JWT whose payload is not base64url JSON (${String(error)})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new MalformedTokenError('The sign-in returned a JWT whose payload is not a JSON object');
  }
  return json as Record<string, unknown>;
}

/** When the token expires, in ms since the epoch (its `exp` claim, seconds). */
export function expiresAtMs(token: string): number {
  const exp = decodeJwtPayload(token)['exp'];
  if (typeof exp !== 'number' || !Number.isFinite(exp)) throw new MalformedTokenError('The id token has no numeric `exp` claim');
  return exp * 1000;
}

/** A token is refreshed when it expires within this margin (a request in flight must not outlive it). */
export const REFRESH_MARGIN_MS = 60_000;

export function needsRefresh(token: string, nowMs: number, marginMs = REFRESH_MARGIN_MS): boolean {
  return expiresAtMs(token) - nowMs <= marginMs;
}
