import { createHash, randomBytes } from 'node:crypto';
import { ROLES, type Role } from '../schemas/index.js';
import type { LocalJwtIssuer } from './jwt-issuer.js';

/**
 * The local cloud's look-alike of Cognito's hosted UI: the OAuth 2.0 authorization code flow with PKCE (S256) on
 * Cognito's paths, so the dashboard signs in locally exactly as it does in AWS.
 *
 * - `GET /oauth2/authorize` checks the request as Cognito does: an unknown `client_id` or a `redirect_uri` that is not
 *   a callback URL is an error page (never a redirect to an unchecked URL); any other fault (response type, PKCE,
 *   scope) goes back to `redirect_uri` with `error=` and the `state`. With a live session cookie it answers a code at
 *   once; otherwise a small form asks which role to sign in as (no password: only on this machine).
 * - `POST /oauth2/authorize` is that form: checked again (and its XSRF token against its cookie), it starts a session
 *   (an HttpOnly cookie) and sends the browser back with `code` and `state`.
 * - `POST /oauth2/token` redeems a code (once, within CODE_TTL_MS, for the same client and `redirect_uri`, with the
 *   verifier whose SHA-256 is the challenge) or a refresh token; failures are OAuth's JSON errors with 400.
 * - `GET /logout` ends the session and sends the browser to `logout_uri` (a callback URL).
 *
 * Invariants: a code is redeemed at most once (taken from the store before it is checked); codes, refresh tokens and
 * sessions live in memory only and expire (a restart of the local cloud signs everyone out); tokens are signed by the
 * local issuer, with `cognito:groups` = [role] and username `dev-<role>`. Every function here maps a request to a
 * response: no I/O but the clock and the random source, both injectable.
 */

export interface OAuthRequest {
  /** The request's path and query on its own origin (`http://localhost:3000/oauth2/authorize?…`). */
  readonly url: URL;
  readonly cookies: Readonly<Record<string, string>>;
  readonly contentType?: string | undefined;
  readonly body?: string | undefined;
}

export interface OAuthResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly cookies: readonly string[];
  readonly body: string;
}

export interface LocalOAuthOptions {
  readonly issuer: Pick<LocalJwtIssuer, 'sign' | 'signAccessToken'>;
  /** The app client id (the tokens' audience). */
  readonly clientId: string;
  /** The app client's callback (and sign-out) URLs: the dashboard's origins + `/`. */
  readonly callbackUrls: readonly string[];
  /** The scopes the app client may ask for; all of them when a request names none. */
  readonly scopes: readonly string[];
  readonly now?: () => number;
  readonly newSecret?: () => string;
}

/** Cognito's authorization codes last 5 minutes. */
export const CODE_TTL_MS = 5 * 60_000;
/** Id and access tokens: Cognito's default hour. */
export const TOKEN_TTL_SECONDS = 3600;
/** Refresh tokens: Cognito's default 30 days. */
export const REFRESH_TTL_MS = 30 * 24 * 3600_000;
/** The sign-in session behind the cookie: a working day. */
export const SESSION_TTL_MS = 12 * 3600_000;
export const SESSION_COOKIE = 'lekiwi-local-session';
export const XSRF_COOKIE = 'lekiwi-local-xsrf';
/** The order the sign-in page offers the roles in. */
export const SIGN_IN_ROLES: readonly Role[] = ['admin', 'engineer', 'operator'];

const ROLE_HINTS: Readonly<Record<Role, string>> = {
  admin: 'everything',
  engineer: 'reads, marks robots failed and recovers them, asks them to report',
  operator: 'reads the fleet',
};
/** RFC 7636: a verifier is 43–128 unreserved characters; an S256 challenge is 43 base64url characters. */
const VERIFIER = /^[A-Za-z0-9._~-]{43,128}$/;
const S256_CHALLENGE = /^[A-Za-z0-9_-]{43}$/;
const MAX_STATE_LENGTH = 2048;

/**
 * Values by key, each until its time is up, in insertion order. Expired entries are dropped as new ones come; past
 * `capacity` the oldest go first, so memory is bounded whatever callers do.
 */
export class ExpiringStore<T> {
  private readonly entries = new Map<string, { value: T; expiresAt: number }>();

  constructor(
    private readonly now: () => number,
    private readonly capacity = 10_000,
  ) {}

  set(key: string, value: T, ttlMs: number): void {
    const now = this.now();
    for (const [old, entry] of this.entries) {
      if (entry.expiresAt > now && this.entries.size < this.capacity) break;
      this.entries.delete(old);
    }
    this.entries.set(key, { value, expiresAt: now + ttlMs });
  }

  get(key: string): T | undefined {
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    if (entry.expiresAt <= this.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return entry.value;
  }

  /** The value, removed: whatever the caller then decides, it can never be had again. */
  take(key: string): T | undefined {
    const value = this.get(key);
    this.entries.delete(key);
    return value;
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  get size(): number {
    return this.entries.size;
  }
}

interface AuthorizeRequest {
  readonly redirectUri: string;
  readonly state: string | null;
  readonly challenge: string;
  readonly scopes: readonly string[];
  /** The query the form carries on, as it came. */
  readonly params: URLSearchParams;
}

interface Grant {
  readonly role: Role;
  readonly clientId: string;
  readonly scopes: readonly string[];
}

interface PendingCode extends Grant {
  readonly redirectUri: string;
  readonly challenge: string;
}

type Checked<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly response: OAuthResponse };

export class LocalOAuth {
  private readonly now: () => number;
  private readonly newSecret: () => string;
  private readonly codes: ExpiringStore<PendingCode>;
  private readonly refreshTokens: ExpiringStore<Grant>;
  private readonly sessions: ExpiringStore<Role>;
  private readonly formActions: string;

  constructor(private readonly options: LocalOAuthOptions) {
    this.now = options.now ?? Date.now;
    this.newSecret = options.newSecret ?? (() => randomBytes(32).toString('base64url'));
    this.codes = new ExpiringStore(this.now);
    this.refreshTokens = new ExpiringStore(this.now);
    this.sessions = new ExpiringStore(this.now);
    // The form posts to its own origin, which then redirects to a callback URL: CSP's form-action covers both.
    this.formActions = ["'self'", ...new Set(options.callbackUrls.map((url) => new URL(url).origin))].join(' ');
  }

  /** `GET /oauth2/authorize`: a code at once for a signed-in browser, else the sign-in form. */
  authorize(request: OAuthRequest): OAuthResponse {
    const checked = this.checkAuthorize(request.url.searchParams);
    if (!checked.ok) return checked.response;
    const role = this.sessionRole(request.cookies);
    if (role) return this.redirectWithCode(checked.value, role, []);
    const xsrf = this.newSecret();
    return {
      status: 200,
      headers: this.htmlHeaders(),
      cookies: [cookie(XSRF_COOKIE, xsrf, { path: '/oauth2', maxAgeSeconds: CODE_TTL_MS / 1000, sameSite: 'Strict' })],
      body: signInPage(checked.value.params, xsrf),
    };
  }

  /** `POST /oauth2/authorize`: the sign-in form, submitted with the role chosen. */
  signIn(request: OAuthRequest): OAuthResponse {
    if (!isForm(request.contentType)) return this.errorPage(400, 'The sign-in form must be posted as application/x-www-form-urlencoded.');
    const form = new URLSearchParams(request.body ?? '');
    const checked = this.checkAuthorize(form);
    if (!checked.ok) return checked.response;
    const xsrf = request.cookies[XSRF_COOKIE];
    if (!xsrf || form.get('_xsrf') !== xsrf) {
      return this.errorPage(403, 'The sign-in form expired or came from elsewhere. Go back to the dashboard and sign in again.');
    }
    const role = form.get('role');
    if (!isRole(role)) return this.errorPage(400, `Pick one of the roles: ${SIGN_IN_ROLES.join(', ')}.`);
    const session = this.newSecret();
    this.sessions.set(session, role, SESSION_TTL_MS);
    return this.redirectWithCode(checked.value, role, [
      cookie(SESSION_COOKIE, session, { path: '/', maxAgeSeconds: SESSION_TTL_MS / 1000, sameSite: 'Lax' }),
      cookie(XSRF_COOKIE, '', { path: '/oauth2', maxAgeSeconds: 0, sameSite: 'Strict' }),
    ]);
  }

  /** `POST /oauth2/token`: a code (with its PKCE verifier) or a refresh token for tokens. */
  token(request: OAuthRequest): OAuthResponse {
    if (!isForm(request.contentType)) return tokenError('invalid_request', 'Send the request as application/x-www-form-urlencoded.');
    const form = new URLSearchParams(request.body ?? '');
    const clientId = form.get('client_id');
    if (!clientId) return tokenError('invalid_request', 'client_id is required.');
    if (clientId !== this.options.clientId) return tokenError('invalid_client', 'client_id is not an app client of this user pool.');
    const grantType = form.get('grant_type');
    if (grantType === 'authorization_code') return this.redeemCode(form, clientId);
    if (grantType === 'refresh_token') return this.refresh(form, clientId);
    return tokenError('unsupported_grant_type', 'grant_type must be authorization_code or refresh_token.');
  }

  /** `GET /logout`: forgets the browser's session and sends it to `logout_uri`. */
  logout(request: OAuthRequest): OAuthResponse {
    const params = request.url.searchParams;
    if (params.get('client_id') !== this.options.clientId) return this.errorPage(400, 'client_id is missing or not an app client of this user pool.');
    const logoutUri = params.get('logout_uri');
    if (!logoutUri || !this.options.callbackUrls.includes(logoutUri)) {
      return this.errorPage(400, `logout_uri must be a sign-out URL of the app client: ${this.options.callbackUrls.join(', ')}.`);
    }
    const session = request.cookies[SESSION_COOKIE];
    if (session) this.sessions.delete(session);
    return {
      status: 302,
      headers: { location: logoutUri, 'cache-control': 'no-store' },
      cookies: [cookie(SESSION_COOKIE, '', { path: '/', maxAgeSeconds: 0, sameSite: 'Lax' })],
      body: '',
    };
  }

  private checkAuthorize(params: URLSearchParams): Checked<AuthorizeRequest> {
    // Faults that must not redirect: the client and where it wants to go are not (yet) trusted.
    if (params.get('client_id') !== this.options.clientId) {
      return { ok: false, response: this.errorPage(400, 'client_id is missing or not an app client of this user pool.') };
    }
    const redirectUri = params.get('redirect_uri');
    if (!redirectUri || !this.options.callbackUrls.includes(redirectUri)) {
      return {
        ok: false,
        response: this.errorPage(400, `redirect_mismatch: redirect_uri must be a callback URL of the app client: ${this.options.callbackUrls.join(', ')}.`),
      };
    }
    // From here on the fault goes back to the client, as Cognito does.
    const state = params.get('state');
    const fail = (error: string, description: string): Checked<AuthorizeRequest> => ({
      ok: false,
      response: redirect(redirectUri, { error, error_description: description, ...(state !== null ? { state } : {}) }, []),
    });
    if (state !== null && state.length > MAX_STATE_LENGTH) return fail('invalid_request', `state is longer than ${MAX_STATE_LENGTH} characters.`);
    if (params.get('response_type') !== 'code') return fail('unsupported_response_type', 'response_type must be code.');
    const challenge = params.get('code_challenge');
    if (!challenge) return fail('invalid_request', 'code_challenge is required (PKCE).');
    if (params.get('code_challenge_method') !== 'S256') return fail('invalid_request', 'code_challenge_method must be S256.');
    if (!S256_CHALLENGE.test(challenge)) return fail('invalid_request', 'code_challenge must be the base64url SHA-256 of the verifier (43 characters).');
    const asked = (params.get('scope') ?? '').split(' ').filter((scope) => scope !== '');
    const unknown = asked.filter((scope) => !this.options.scopes.includes(scope));
    if (unknown.length > 0) return fail('invalid_scope', `The app client may not ask for ${unknown.join(', ')}.`);
    const scopes = asked.length > 0 ? [...new Set(asked)] : [...this.options.scopes];
    const carried = new URLSearchParams();
    for (const name of ['response_type', 'client_id', 'redirect_uri', 'state', 'code_challenge', 'code_challenge_method', 'scope']) {
      const value = params.get(name);
      if (value !== null) carried.set(name, value);
    }
    return { ok: true, value: { redirectUri, state, challenge, scopes, params: carried } };
  }

  private redirectWithCode(request: AuthorizeRequest, role: Role, cookies: readonly string[]): OAuthResponse {
    const code = this.newSecret();
    this.codes.set(
      code,
      { role, clientId: this.options.clientId, scopes: request.scopes, redirectUri: request.redirectUri, challenge: request.challenge },
      CODE_TTL_MS,
    );
    return redirect(request.redirectUri, { code, ...(request.state !== null ? { state: request.state } : {}) }, cookies);
  }

  private redeemCode(form: URLSearchParams, clientId: string): OAuthResponse {
    const code = form.get('code');
    const redirectUri = form.get('redirect_uri');
    const verifier = form.get('code_verifier');
    if (!code || !redirectUri || !verifier) return tokenError('invalid_request', 'code, redirect_uri and code_verifier are required.');
    const pending = this.codes.take(code);
    if (!pending || pending.clientId !== clientId) return tokenError('invalid_grant', 'The code is unknown, used or expired.');
    if (pending.redirectUri !== redirectUri) return tokenError('invalid_grant', 'redirect_uri is not the one the code was issued for.');
    if (!VERIFIER.test(verifier) || s256(verifier) !== pending.challenge) {
      return tokenError('invalid_grant', 'code_verifier does not match the code_challenge.');
    }
    const refreshToken = this.newSecret();
    this.refreshTokens.set(refreshToken, { role: pending.role, clientId, scopes: pending.scopes }, REFRESH_TTL_MS);
    return tokenAnswer({ ...this.tokensFor(pending), refresh_token: refreshToken });
  }

  private refresh(form: URLSearchParams, clientId: string): OAuthResponse {
    const refreshToken = form.get('refresh_token');
    if (!refreshToken) return tokenError('invalid_request', 'refresh_token is required.');
    const grant = this.refreshTokens.get(refreshToken);
    if (!grant || grant.clientId !== clientId) return tokenError('invalid_grant', 'The refresh token is unknown, revoked or expired.');
    return tokenAnswer(this.tokensFor(grant));
  }

  /** Cognito answers an id token only for the `openid` scope. */
  private tokensFor(grant: Grant): Record<string, string | number> {
    const identity = {
      subject: `dev-${grant.role}`,
      username: `dev-${grant.role}`,
      groups: [grant.role],
      expiresInSeconds: TOKEN_TTL_SECONDS,
      issuedAt: new Date(this.now()),
    };
    return {
      ...(grant.scopes.includes('openid') ? { id_token: this.options.issuer.sign(identity) } : {}),
      access_token: this.options.issuer.signAccessToken({ ...identity, scopes: grant.scopes }),
      expires_in: TOKEN_TTL_SECONDS,
      token_type: 'Bearer',
    };
  }

  private sessionRole(cookies: Readonly<Record<string, string>>): Role | undefined {
    const session = cookies[SESSION_COOKIE];
    return session ? this.sessions.get(session) : undefined;
  }

  private htmlHeaders(): Record<string, string> {
    return {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      'content-security-policy': `default-src 'none'; style-src '${PAGE_STYLE_HASH}'; form-action ${this.formActions}; frame-ancestors 'none'; base-uri 'none'`,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'x-frame-options': 'DENY',
    };
  }

  private errorPage(status: number, message: string): OAuthResponse {
    return { status, headers: this.htmlHeaders(), cookies: [], body: page('Sign-in error', `<h1>Sign-in error</h1>\n<p role="alert">${escapeHtml(message)}</p>`) };
  }
}

/** `name=value` pairs of a Cookie header (the first of a name wins, as browsers send the most specific first). */
export function parseCookies(header: string | undefined): Record<string, string> {
  const cookies: Record<string, string> = {};
  for (const part of (header ?? '').split(';')) {
    const at = part.indexOf('=');
    if (at < 0) continue;
    const name = part.slice(0, at).trim();
    if (name && !(name in cookies)) cookies[name] = part.slice(at + 1).trim();
  }
  return cookies;
}

export function s256(verifier: string): string {
  return createHash('sha256').update(verifier).digest('base64url');
}

function isRole(value: string | null): value is Role {
  return (ROLES as readonly (string | null)[]).includes(value);
}

function isForm(contentType: string | undefined): boolean {
  return (contentType ?? '').split(';')[0]?.trim().toLowerCase() === 'application/x-www-form-urlencoded';
}

function redirect(to: string, params: Record<string, string>, cookies: readonly string[]): OAuthResponse {
  const url = new URL(to);
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
  return { status: 302, headers: { location: url.toString(), 'cache-control': 'no-store' }, cookies, body: '' };
}

function tokenAnswer(body: Record<string, string | number>): OAuthResponse {
  return { status: 200, headers: { 'content-type': 'application/json', 'cache-control': 'no-store', pragma: 'no-cache' }, cookies: [], body: JSON.stringify(body) };
}

function tokenError(error: string, description: string): OAuthResponse {
  return {
    status: 400,
    headers: { 'content-type': 'application/json', 'cache-control': 'no-store', pragma: 'no-cache' },
    cookies: [],
    body: JSON.stringify({ error, error_description: description }),
  };
}

function cookie(name: string, value: string, options: { path: string; maxAgeSeconds: number; sameSite: 'Lax' | 'Strict' }): string {
  return `${name}=${value}; Path=${options.path}; Max-Age=${Math.floor(options.maxAgeSeconds)}; HttpOnly; SameSite=${options.sameSite}`;
}

const PAGE_STYLE = `
body { font: 16px/1.5 system-ui, sans-serif; margin: 0; color: #1b1f23; background: #f6f8fa; }
main { max-width: 28rem; margin: 4rem auto; padding: 2rem; background: #fff; border: 1px solid #d0d7de; border-radius: 8px; }
h1 { font-size: 1.4rem; margin: 0 0 .5rem; }
fieldset { border: 0; padding: 0; margin: 1.5rem 0 0; display: grid; gap: .75rem; }
legend { font-weight: 600; margin-bottom: .5rem; }
button { font: inherit; text-align: left; padding: .75rem 1rem; border: 1px solid #8c959f; border-radius: 6px; background: #fff; cursor: pointer; }
button:hover, button:focus-visible { border-color: #0969da; outline: 2px solid #0969da; outline-offset: 1px; }
button strong { display: block; text-transform: capitalize; }
button span { color: #57606a; font-size: .9rem; }
[role="alert"] { color: #a40e26; }
`;
const PAGE_STYLE_HASH = `sha256-${createHash('sha256').update(PAGE_STYLE).digest('base64')}`;

function page(title: string, content: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} · Lekiwi Heartbeat (local)</title>
<style>${PAGE_STYLE}</style>
</head>
<body>
<main>
${content}
</main>
</body>
</html>
`;
}

function signInPage(params: URLSearchParams, xsrf: string): string {
  const hidden = [...params, ['_xsrf', xsrf]]
    .map(([name, value]) => `<input type="hidden" name="${escapeHtml(name ?? '')}" value="${escapeHtml(value ?? '')}">`)
    .join('\n');
  const buttons = SIGN_IN_ROLES.map(
    (role) => `<button type="submit" name="role" value="${role}"><strong>${role}</strong> <span>${escapeHtml(ROLE_HINTS[role])}</span></button>`,
  ).join('\n');
  return page(
    'Sign in',
    `<h1>Sign in to Lekiwi Heartbeat</h1>
<p>This is the local cloud's stand-in for Cognito: choose the role to work as. There is no password; it works only on this machine.</p>
<form method="post" action="/oauth2/authorize">
${hidden}
<fieldset>
<legend>Sign in as</legend>
${buttons}
</fieldset>
</form>`,
  );
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}
