import type { AuthSession, SignedInUser } from '../contracts.js';
import { decodeJwtPayload, expiresAtMs, needsRefresh } from './jwt.js';
import {
  authorizeUrlOf,
  callbackParamsOf,
  codeExchangeBody,
  logoutUrlOf,
  readTokenAnswer,
  redirectUriOf,
  refreshBody,
  type AuthConfig,
} from './oauth-urls.js';
import { challengeOf, createState, createVerifier, type RandomAndDigest } from './pkce.js';
import { safeReturnTo, savePendingSignIn, takePendingSignIn, type StorageLike } from './round-trip.js';
import { userFromClaims } from './user.js';

/**
 * Sign-in: the OAuth 2.0 authorization code flow with PKCE against the stage's issuer (Cognito's hosted UI, or the
 * local cloud's look-alike). INVARIANTS:
 * - tokens (id, refresh) live in this object's memory only: never in storage, the URL after the exchange, or the HTML;
 * - the round trip's state, verifier and return URL are in sessionStorage only between leaving and coming back, and
 *   are deleted on the way back whatever happens; a code whose `state` does not match is refused;
 * - `idToken()` returns a token valid for at least REFRESH_MARGIN_MS when it can: it refreshes when closer to expiry,
 *   one refresh at a time (concurrent callers share it); a refresh the issuer refuses (`invalid_grant`) sends the user
 *   to sign in again; a refresh that fails otherwise keeps the current token while it is still valid.
 */

export interface AuthEnvironment {
  readonly location: {
    readonly origin: string;
    readonly pathname: string;
    readonly search: string;
    readonly hash: string;
    assign(url: string): void;
  };
  readonly history: { replaceState(data: unknown, unused: string, url: string): void };
  readonly storage: StorageLike;
  readonly crypto: RandomAndDigest;
  readonly fetch: (
    url: string,
    init: { method: 'POST'; headers: Record<string, string>; body: string },
  ) => Promise<{ readonly status: number; json(): Promise<unknown> }>;
  /** ms since the epoch (the tokens' `exp` is on that clock). */
  readonly now: () => number;
}

/** Sign-in failed in a way the user must act on: the message says what happened and what to do. */
export class SignInError extends Error {
  override readonly name = 'SignInError';
}

export type SignInOutcome = { readonly kind: 'signed-in'; readonly session: TokenSession } | { readonly kind: 'redirecting' };

/** After the browser is back from the issuer: exchange the code. Otherwise: go to the issuer (and resolve 'redirecting'). */
export async function signIn(auth: AuthConfig, env: AuthEnvironment): Promise<SignInOutcome> {
  const callback = callbackParamsOf(env.location.search);
  if (callback.kind === 'none') {
    await redirectToSignIn(auth, env, currentPageOf(env));
    return { kind: 'redirecting' };
  }
  const pending = takePendingSignIn(env.storage);
  if (callback.kind === 'error') {
    env.history.replaceState(null, '', pending?.returnTo ?? '/');
    throw new SignInError(
      `The sign-in was refused: ${callback.error}${callback.description ? ` (${callback.description})` : ''}. ` +
        'Sign in again; if it keeps failing, ask an admin to check your account and its groups.',
    );
  }
  if (pending === null) {
    // A code this tab did not ask for (a reloaded or copied callback URL): it cannot be used without its verifier.
    await redirectToSignIn(auth, env, '/');
    return { kind: 'redirecting' };
  }
  if (pending.state !== callback.state) {
    env.history.replaceState(null, '', pending.returnTo);
    throw new SignInError(
      'The sign-in came back with a state this tab did not send, so its code was not used (another tab or a forged link). Sign in again.',
    );
  }
  const answer = await postToken(env, auth, codeExchangeBody(auth, {
    code: callback.code,
    redirectUri: redirectUriOf(env.location.origin),
    verifier: pending.verifier,
  }));
  if (!answer.ok) {
    env.history.replaceState(null, '', pending.returnTo);
    throw new SignInError(
      `The issuer refused to exchange the sign-in code: ${answer.error} (${answer.description}). Sign in again; if it keeps ` +
        "failing, check the app client's callback URL is this page's origin followed by /.",
    );
  }
  const session = new TokenSession(auth, env, answer.idToken, answer.refreshToken);
  env.history.replaceState(null, '', pending.returnTo);
  return { kind: 'signed-in', session };
}

/** Leaves for the issuer's sign-in page, remembering (for this one trip) where to come back to. */
export async function redirectToSignIn(auth: AuthConfig, env: AuthEnvironment, returnTo: string): Promise<void> {
  const state = createState(env.crypto);
  const verifier = createVerifier(env.crypto);
  const challenge = await challengeOf(verifier, env.crypto);
  savePendingSignIn(env.storage, { state, verifier, returnTo: safeReturnTo(returnTo) });
  env.location.assign(authorizeUrlOf(auth, { redirectUri: redirectUriOf(env.location.origin), state, challenge }));
}

function currentPageOf(env: AuthEnvironment): string {
  return `${env.location.pathname}${env.location.search}${env.location.hash}`;
}

async function postToken(env: AuthEnvironment, auth: AuthConfig, body: string) {
  let response: { readonly status: number; json(): Promise<unknown> };
  try {
    response = await env.fetch(auth.tokenUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body,
    });
  } catch (error) {
    return { ok: false as const, error: 'network_error', description: `${auth.tokenUrl} did not answer (${String(error)})` };
  }
  const json = await response.json().catch(() => null);
  return readTokenAnswer(response.status, json);
}

/** The signed-in user's tokens, in memory. */
export class TokenSession implements AuthSession {
  readonly user: SignedInUser;
  /** When this session was made (ms since the epoch): a 401 right after signing in is a setup problem, not an expiry. */
  readonly signedInAt: number;
  #idToken: string | null;
  #refreshToken: string | null;
  #refreshing: Promise<string> | null = null;

  constructor(
    private readonly auth: AuthConfig,
    private readonly env: AuthEnvironment,
    idToken: string,
    refreshToken: string | null,
  ) {
    expiresAtMs(idToken); // a token without `exp` is refused here, not at the first refresh
    this.user = userFromClaims(decodeJwtPayload(idToken));
    this.signedInAt = env.now();
    this.#idToken = idToken;
    this.#refreshToken = refreshToken;
  }

  idToken(): Promise<string> {
    const token = this.#idToken;
    if (token === null) return Promise.reject(new SignInError('Signed out: sign in again.'));
    if (!needsRefresh(token, this.env.now())) return Promise.resolve(token);
    this.#refreshing ??= this.#refresh(token).finally(() => {
      this.#refreshing = null;
    });
    return this.#refreshing;
  }

  async #refresh(current: string): Promise<string> {
    const stillValid = () => expiresAtMs(current) > this.env.now();
    if (this.#refreshToken === null) {
      if (stillValid()) return current;
      return this.#signInAgain('The sign-in expired and the issuer gave no refresh token.');
    }
    const answer = await postToken(this.env, this.auth, refreshBody(this.auth, this.#refreshToken));
    if (answer.ok) {
      if (this.#idToken === null) throw new SignInError('Signed out: sign in again.');
      this.#idToken = answer.idToken;
      if (answer.refreshToken !== null) this.#refreshToken = answer.refreshToken;
      return answer.idToken;
    }
    if (answer.error === 'invalid_grant') return this.#signInAgain('The sign-in expired (the refresh token was refused).');
    if (stillValid()) return current;
    throw new SignInError(`Could not refresh the sign-in: ${answer.error} (${answer.description}). Check the network; the page retries.`);
  }

  async #signInAgain(why: string): Promise<never> {
    await this.reauthenticate();
    throw new SignInError(`${why} Signing in again…`);
  }

  /** Forgets the tokens and goes to the issuer's sign-in, coming back to the page the user is on. */
  async reauthenticate(): Promise<void> {
    this.#forget();
    await redirectToSignIn(this.auth, this.env, currentPageOf(this.env));
  }

  signOut(): void {
    this.#forget();
    this.env.location.assign(logoutUrlOf(this.auth, this.env.location.origin));
  }

  #forget(): void {
    this.#idToken = null;
    this.#refreshToken = null;
  }
}
