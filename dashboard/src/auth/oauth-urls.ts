import type { DashboardConfig } from '../contracts.js';

/**
 * The URLs and form bodies of the OAuth 2.0 authorization code flow with PKCE, as Cognito's hosted UI (and the local
 * issuer's look-alike) take them. The redirect URI is the page's origin + `/`: the app client's callback URL.
 */
export type AuthConfig = DashboardConfig['auth'];

export function redirectUriOf(origin: string): string {
  return `${origin}/`;
}

export function authorizeUrlOf(auth: AuthConfig, request: { redirectUri: string; state: string; challenge: string }): string {
  const url = new URL(auth.authorizeUrl);
  url.searchParams.set('response_type', 'code');
  url.searchParams.set('client_id', auth.clientId);
  url.searchParams.set('redirect_uri', request.redirectUri);
  url.searchParams.set('scope', auth.scopes.join(' '));
  url.searchParams.set('state', request.state);
  url.searchParams.set('code_challenge', request.challenge);
  url.searchParams.set('code_challenge_method', 'S256');
  return url.toString();
}

/** Cognito's logout: it ends the hosted UI's session and sends the browser to `logout_uri` (the page, which signs in again). */
export function logoutUrlOf(auth: AuthConfig, origin: string): string {
  const url = new URL(auth.logoutUrl);
  url.searchParams.set('client_id', auth.clientId);
  url.searchParams.set('logout_uri', redirectUriOf(origin));
  return url.toString();
}

export function codeExchangeBody(auth: AuthConfig, request: { code: string; redirectUri: string; verifier: string }): string {
  return new URLSearchParams({
    grant_type: 'authorization_code',
    client_id: auth.clientId,
    code: request.code,
    redirect_uri: request.redirectUri,
    code_verifier: request.verifier,
  }).toString();
}

export function refreshBody(auth: AuthConfig, refreshToken: string): string {
  return new URLSearchParams({ grant_type: 'refresh_token', client_id: auth.clientId, refresh_token: refreshToken }).toString();
}

/** What the page's URL says after the issuer sent the browser back: a code, an error, or nothing to do with sign-in. */
export type CallbackParams =
  | { readonly kind: 'code'; readonly code: string; readonly state: string }
  | { readonly kind: 'error'; readonly error: string; readonly description: string | null; readonly state: string | null }
  | { readonly kind: 'none' };

export function callbackParamsOf(search: string): CallbackParams {
  const params = new URLSearchParams(search);
  const error = params.get('error');
  if (error !== null) return { kind: 'error', error, description: params.get('error_description'), state: params.get('state') };
  const code = params.get('code');
  const state = params.get('state');
  if (code !== null && state !== null) return { kind: 'code', code, state };
  return { kind: 'none' };
}

/** A token endpoint's answer: the tokens the page keeps, or the OAuth error it named. */
export type TokenAnswer =
  | { readonly ok: true; readonly idToken: string; readonly refreshToken: string | null }
  | { readonly ok: false; readonly error: string; readonly description: string };

export function readTokenAnswer(status: number, body: unknown): TokenAnswer {
  const record = typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {};
  if (status >= 200 && status < 300 && typeof record['id_token'] === 'string') {
    const refresh = record['refresh_token'];
    return { ok: true, idToken: record['id_token'], refreshToken: typeof refresh === 'string' ? refresh : null };
  }
  const error = typeof record['error'] === 'string' ? record['error'] : `http_${status}`;
  const description =
    typeof record['error_description'] === 'string'
      ? record['error_description']
      : status >= 200 && status < 300
        ? 'the answer has no id_token (is the openid scope configured?)'
        : `the token endpoint answered ${status}`;
  return { ok: false, error, description };
}
