import { describe, expect, it } from 'vitest';
import { PENDING_SIGN_IN_KEY } from '../../../dashboard/src/auth/round-trip.js';
import { signIn, SignInError, type AuthEnvironment, type TokenSession } from '../../../dashboard/src/auth/session.js';
import { challengeOf } from '../../../dashboard/src/auth/pkce.js';
import { memoryStorage, unsignedJwt } from './auth-fakes.js';

const auth = {
  authorizeUrl: 'http://localhost:3000/oauth2/authorize',
  tokenUrl: 'http://localhost:3000/oauth2/token',
  logoutUrl: 'http://localhost:3000/logout',
  clientId: 'local-dashboard',
  scopes: ['openid'],
};

interface TokenCall {
  readonly body: URLSearchParams;
  resolve(status: number, json: unknown): void;
  reject(error: Error): void;
}

/** A page at `url` with an issuer whose token endpoint the test answers by hand. */
function page(url: string) {
  const parsed = new URL(url);
  const storage = memoryStorage();
  const assigned: string[] = [];
  const replaced: string[] = [];
  const tokenCalls: TokenCall[] = [];
  let now = 1_000_000_000_000;
  const env: AuthEnvironment = {
    location: {
      origin: parsed.origin,
      pathname: parsed.pathname,
      search: parsed.search,
      hash: parsed.hash,
      assign: (to) => void assigned.push(to),
    },
    history: { replaceState: (_data, _unused, to) => void replaced.push(to) },
    storage,
    crypto: globalThis.crypto,
    fetch: (to, init) => {
      expect(to).toBe(auth.tokenUrl);
      expect(init.headers['content-type']).toBe('application/x-www-form-urlencoded');
      return new Promise((resolve, reject) => {
        tokenCalls.push({
          body: new URLSearchParams(init.body),
          resolve: (status, json) => resolve({ status, json: async () => json }),
          reject,
        });
      });
    },
    now: () => now,
  };
  return {
    env,
    storage,
    assigned,
    replaced,
    tokenCalls,
    setNow: (ms: number) => {
      now = ms;
    },
  };
}

const idToken = (expSeconds: number, extra: Record<string, unknown> = {}) =>
  unsignedJwt({ 'cognito:username': 'local-engineer', 'cognito:groups': ['engineer'], exp: expSeconds, ...extra });

async function signedIn(expSeconds = 1_000_000_000 + 3_600) {
  const first = page('http://localhost:3000/robots/lekiwi-LK0001?tab=1');
  await expect(signIn(auth, first.env)).resolves.toEqual({ kind: 'redirecting' });
  const state = new URL(first.assigned[0]!).searchParams.get('state')!;
  const back = page(`http://localhost:3000/?code=the-code&state=${state}`);
  for (const [key, value] of first.storage.items) back.storage.setItem(key, value);
  const outcome = signIn(auth, back.env);
  await expect.poll(() => back.tokenCalls.length).toBe(1);
  back.tokenCalls[0]!.resolve(200, { id_token: idToken(expSeconds), refresh_token: 'refresh-1', access_token: 'a' });
  const result = await outcome;
  if (result.kind !== 'signed-in') throw new Error('not signed in');
  return { ...back, session: result.session as TokenSession, codeBody: back.tokenCalls[0]!.body, first };
}

describe('sign-in: authorization code with PKCE', () => {
  it('leaves for the issuer with a S256 challenge, remembering state, verifier and the page for this trip only', async () => {
    const { env, assigned, storage } = page('http://localhost:3000/robots/lekiwi-LK0001?tab=1#top');
    await expect(signIn(auth, env)).resolves.toEqual({ kind: 'redirecting' });
    const url = new URL(assigned[0]!);
    expect(url.origin + url.pathname).toBe(auth.authorizeUrl);
    expect(url.searchParams.get('redirect_uri')).toBe('http://localhost:3000/');
    const pending = JSON.parse(storage.getItem(PENDING_SIGN_IN_KEY)!);
    expect(pending).toMatchObject({ state: url.searchParams.get('state'), returnTo: '/robots/lekiwi-LK0001?tab=1#top' });
    await expect(challengeOf(pending.verifier, globalThis.crypto)).resolves.toBe(url.searchParams.get('code_challenge'));
    expect([...storage.items.values()].join()).not.toMatch(/eyJ/); // no token, ever
  });

  it('exchanges the code, keeps the tokens in memory only, and goes back to the saved page', async () => {
    const { session, codeBody, replaced, storage, first } = await signedIn();
    const verifier = JSON.parse(first.storage.getItem(PENDING_SIGN_IN_KEY)!).verifier;
    expect(Object.fromEntries(codeBody)).toEqual({
      grant_type: 'authorization_code',
      client_id: 'local-dashboard',
      code: 'the-code',
      redirect_uri: 'http://localhost:3000/',
      code_verifier: verifier,
    });
    expect(replaced).toEqual(['/robots/lekiwi-LK0001?tab=1']);
    expect(storage.items.size).toBe(0);
    expect(session.user).toEqual({ username: 'local-engineer', groups: ['engineer'], role: 'engineer' });
  });

  it('refuses a code whose state this tab did not send, and forgets the pending trip', async () => {
    const first = page('http://localhost:3000/alerts');
    await signIn(auth, first.env);
    const back = page('http://localhost:3000/?code=c&state=forged');
    for (const [key, value] of first.storage.items) back.storage.setItem(key, value);
    await expect(signIn(auth, back.env)).rejects.toThrow(/state this tab did not send/);
    expect(back.tokenCalls).toHaveLength(0);
    expect(back.storage.items.size).toBe(0);
    expect(back.replaced).toEqual(['/alerts']);
  });

  it("starts over when a code comes back with no trip pending (a reloaded callback URL)", async () => {
    const back = page('http://localhost:3000/?code=c&state=s');
    await expect(signIn(auth, back.env)).resolves.toEqual({ kind: 'redirecting' });
    expect(back.tokenCalls).toHaveLength(0);
    expect(back.assigned[0]).toMatch(/^http:\/\/localhost:3000\/oauth2\/authorize\?/);
  });

  it("says what the issuer refused", async () => {
    const back = page('http://localhost:3000/?error=access_denied&error_description=User+is+disabled&state=s');
    const failure = signIn(auth, back.env);
    await expect(failure).rejects.toBeInstanceOf(SignInError);
    await expect(failure).rejects.toThrow(/access_denied \(User is disabled\)/);
  });

  it('names a refused code exchange', async () => {
    const first = page('http://localhost:3000/');
    await signIn(auth, first.env);
    const state = new URL(first.assigned[0]!).searchParams.get('state')!;
    const back = page(`http://localhost:3000/?code=c&state=${state}`);
    for (const [key, value] of first.storage.items) back.storage.setItem(key, value);
    const outcome = signIn(auth, back.env);
    await expect.poll(() => back.tokenCalls.length).toBe(1);
    back.tokenCalls[0]!.resolve(400, { error: 'invalid_grant', error_description: 'code expired' });
    await expect(outcome).rejects.toThrow(/invalid_grant \(code expired\)/);
  });
});

describe('the session: id token refresh', () => {
  it('returns the id token while it has more than a minute left, without asking the issuer', async () => {
    const { session, tokenCalls, setNow } = await signedIn(1_000_000_000 + 3_600);
    setNow(1_000_000_000_000 + 3_600_000 - 61_000);
    await expect(session.idToken()).resolves.toBe(idToken(1_000_000_000 + 3_600));
    expect(tokenCalls).toHaveLength(1); // the code exchange only
  });

  it('refreshes within the last minute, once for concurrent callers', async () => {
    const { session, tokenCalls, setNow } = await signedIn(1_000_000_000 + 3_600);
    setNow(1_000_000_000_000 + 3_600_000 - 30_000);
    const calls = [session.idToken(), session.idToken(), session.idToken()];
    await expect.poll(() => tokenCalls.length).toBe(2);
    expect(Object.fromEntries(tokenCalls[1]!.body)).toEqual({ grant_type: 'refresh_token', client_id: 'local-dashboard', refresh_token: 'refresh-1' });
    const fresh = idToken(1_000_000_000 + 7_200);
    tokenCalls[1]!.resolve(200, { id_token: fresh });
    await expect(Promise.all(calls)).resolves.toEqual([fresh, fresh, fresh]);
    await expect(session.idToken()).resolves.toBe(fresh);
    expect(tokenCalls).toHaveLength(2);
  });

  it('keeps the current token while still valid when the issuer cannot be reached', async () => {
    const { session, tokenCalls, setNow } = await signedIn(1_000_000_000 + 3_600);
    setNow(1_000_000_000_000 + 3_600_000 - 30_000);
    const call = session.idToken();
    await expect.poll(() => tokenCalls.length).toBe(2);
    tokenCalls[1]!.reject(new Error('offline'));
    await expect(call).resolves.toBe(idToken(1_000_000_000 + 3_600));
  });

  it('fails with the reason once expired and the issuer still cannot be reached', async () => {
    const { session, tokenCalls, setNow } = await signedIn(1_000_000_000 + 3_600);
    setNow(1_000_000_000_000 + 3_600_000 + 1);
    const call = session.idToken();
    await expect.poll(() => tokenCalls.length).toBe(2);
    tokenCalls[1]!.reject(new Error('offline'));
    await expect(call).rejects.toThrow(/network_error/);
  });

  it('signs in again (back to this page) when the issuer refuses the refresh token', async () => {
    const { session, tokenCalls, setNow, assigned, storage } = await signedIn(1_000_000_000 + 3_600);
    setNow(1_000_000_000_000 + 3_600_000 - 30_000);
    const call = session.idToken();
    await expect.poll(() => tokenCalls.length).toBe(2);
    tokenCalls[1]!.resolve(400, { error: 'invalid_grant', error_description: 'Refresh Token has expired' });
    await expect(call).rejects.toBeInstanceOf(SignInError);
    expect(assigned[assigned.length - 1]).toMatch(/\/oauth2\/authorize\?/);
    expect(storage.getItem(PENDING_SIGN_IN_KEY)).not.toBeNull();
    await expect(session.idToken()).rejects.toThrow(/Signed out/);
  });

  it('signs out: forgets the tokens and goes to the logout with client_id and logout_uri', async () => {
    const { session, assigned } = await signedIn();
    session.signOut();
    const logout = new URL(assigned[assigned.length - 1]!);
    expect(logout.origin + logout.pathname).toBe(auth.logoutUrl);
    expect(logout.searchParams.get('client_id')).toBe('local-dashboard');
    expect(logout.searchParams.get('logout_uri')).toBe('http://localhost:3000/');
    await expect(session.idToken()).rejects.toThrow(/Signed out/);
  });
});
