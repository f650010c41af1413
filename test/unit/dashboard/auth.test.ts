import { describe, expect, it } from 'vitest';
import { decodeJwtPayload, expiresAtMs, MalformedTokenError, needsRefresh } from '../../../dashboard/src/auth/jwt.js';
import {
  authorizeUrlOf,
  callbackParamsOf,
  codeExchangeBody,
  logoutUrlOf,
  readTokenAnswer,
  redirectUriOf,
  refreshBody,
} from '../../../dashboard/src/auth/oauth-urls.js';
import { base64Url, challengeOf, createState, createVerifier } from '../../../dashboard/src/auth/pkce.js';
import { PENDING_SIGN_IN_KEY, safeReturnTo, savePendingSignIn, takePendingSignIn } from '../../../dashboard/src/auth/round-trip.js';
import { roleOf, userFromClaims } from '../../../dashboard/src/auth/user.js';
import { memoryStorage, unsignedJwt } from './auth-fakes.js';

const auth = {
  authorizeUrl: 'https://fleet.auth.eu-west-1.amazoncognito.com/oauth2/authorize',
  tokenUrl: 'https://fleet.auth.eu-west-1.amazoncognito.com/oauth2/token',
  logoutUrl: 'https://fleet.auth.eu-west-1.amazoncognito.com/logout',
  clientId: 'client-123',
  scopes: ['openid', 'email', 'profile'],
};

describe('PKCE (S256)', () => {
  it('gives RFC 7636 appendix B challenge for its verifier', async () => {
    await expect(challengeOf('dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk', globalThis.crypto)).resolves.toBe(
      'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
    );
  });

  it('makes 43-character url-safe verifiers and 22-character states, different each time', () => {
    const verifiers = new Set(Array.from({ length: 50 }, () => createVerifier(globalThis.crypto)));
    expect(verifiers.size).toBe(50);
    for (const verifier of verifiers) expect(verifier).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(createState(globalThis.crypto)).toMatch(/^[A-Za-z0-9_-]{22}$/);
  });

  it('refuses a verifier RFC 7636 does not allow', async () => {
    await expect(challengeOf('too-short', globalThis.crypto)).rejects.toThrow(/43 to 128/);
  });

  it('encodes base64url without padding', () => {
    expect(base64Url(new Uint8Array([0xfb, 0xff, 0xfe]))).toBe('-__-');
    expect(base64Url(new Uint8Array([1]))).toBe('AQ');
  });
});

describe('id token reading', () => {
  it('decodes the payload, unicode included, and its expiry', () => {
    const token = unsignedJwt({ 'cognito:username': 'zoë', exp: 1_800_000_000 });
    expect(decodeJwtPayload(token)['cognito:username']).toBe('zoë');
    expect(expiresAtMs(token)).toBe(1_800_000_000_000);
  });

  it('needs a refresh within the last minute, not before', () => {
    const token = unsignedJwt({ exp: 1_000 });
    expect(needsRefresh(token, 1_000_000 - 60_001)).toBe(false);
    expect(needsRefresh(token, 1_000_000 - 60_000)).toBe(true);
    expect(needsRefresh(token, 1_000_001)).toBe(true);
  });

  it('names what is wrong with a token that cannot be read', () => {
    expect(() => decodeJwtPayload('not-a-jwt')).toThrow(MalformedTokenError);
    expect(() => decodeJwtPayload('a.%%%.c')).toThrow(/base64url JSON/);
    expect(() => expiresAtMs(unsignedJwt({ sub: 'x' }))).toThrow(/exp/);
  });
});

describe('the signed-in user', () => {
  it('takes the most powerful fleet role: admin > engineer > operator', () => {
    expect(roleOf(['operator', 'admin', 'engineer'])).toBe('admin');
    expect(roleOf(['operator', 'engineer'])).toBe('engineer');
    expect(roleOf(['other', 'operator'])).toBe('operator');
    expect(roleOf(['other'])).toBeNull();
    expect(roleOf([])).toBeNull();
  });

  it("reads Cognito's claims, falling back to username", () => {
    expect(userFromClaims({ 'cognito:username': 'ada', username: 'x', 'cognito:groups': ['engineer', 'ops'] })).toEqual({
      username: 'ada',
      groups: ['engineer', 'ops'],
      role: 'engineer',
    });
    expect(userFromClaims({ username: 'bob' })).toEqual({ username: 'bob', groups: [], role: null });
    expect(userFromClaims({ sub: 's-1', 'cognito:groups': 'admin' }).role).toBe('admin');
  });
});

describe('OAuth URLs and bodies', () => {
  it("sends the authorization request Cognito's hosted UI takes", () => {
    const url = new URL(authorizeUrlOf(auth, { redirectUri: 'https://dash.example/', state: 's1', challenge: 'c1' }));
    expect(`${url.origin}${url.pathname}`).toBe(auth.authorizeUrl);
    expect(Object.fromEntries(url.searchParams)).toEqual({
      response_type: 'code',
      client_id: 'client-123',
      redirect_uri: 'https://dash.example/',
      scope: 'openid email profile',
      state: 's1',
      code_challenge: 'c1',
      code_challenge_method: 'S256',
    });
  });

  it('comes back to the origin + / and logs out to it', () => {
    expect(redirectUriOf('http://localhost:3000')).toBe('http://localhost:3000/');
    const logout = new URL(logoutUrlOf(auth, 'https://dash.example'));
    expect(logout.pathname).toBe('/logout');
    expect(logout.searchParams.get('client_id')).toBe('client-123');
    expect(logout.searchParams.get('logout_uri')).toBe('https://dash.example/');
  });

  it('exchanges the code with the verifier, and refreshes with the refresh token', () => {
    expect(Object.fromEntries(new URLSearchParams(codeExchangeBody(auth, { code: 'k', redirectUri: 'https://d/', verifier: 'v' })))).toEqual({
      grant_type: 'authorization_code',
      client_id: 'client-123',
      code: 'k',
      redirect_uri: 'https://d/',
      code_verifier: 'v',
    });
    expect(Object.fromEntries(new URLSearchParams(refreshBody(auth, 'r')))).toEqual({
      grant_type: 'refresh_token',
      client_id: 'client-123',
      refresh_token: 'r',
    });
  });

  it('reads the callback: a code, an error, or nothing', () => {
    expect(callbackParamsOf('?code=abc&state=xyz')).toEqual({ kind: 'code', code: 'abc', state: 'xyz' });
    expect(callbackParamsOf('?error=access_denied&error_description=no&state=xyz')).toEqual({
      kind: 'error',
      error: 'access_denied',
      description: 'no',
      state: 'xyz',
    });
    expect(callbackParamsOf('?status=online&sel=a,b')).toEqual({ kind: 'none' });
    expect(callbackParamsOf('?code=abc')).toEqual({ kind: 'none' });
  });

  it("reads the token endpoint's answers", () => {
    expect(readTokenAnswer(200, { id_token: 'i', refresh_token: 'r', access_token: 'a' })).toEqual({ ok: true, idToken: 'i', refreshToken: 'r' });
    expect(readTokenAnswer(200, { id_token: 'i' })).toEqual({ ok: true, idToken: 'i', refreshToken: null });
    expect(readTokenAnswer(400, { error: 'invalid_grant', error_description: 'expired' })).toEqual({
      ok: false,
      error: 'invalid_grant',
      description: 'expired',
    });
    expect(readTokenAnswer(200, { access_token: 'a' })).toMatchObject({ ok: false, description: /openid/ });
    expect(readTokenAnswer(502, null)).toEqual({ ok: false, error: 'http_502', description: 'the token endpoint answered 502' });
  });
});

describe('the round trip to the issuer', () => {
  it('is kept for one return only', () => {
    const storage = memoryStorage();
    savePendingSignIn(storage, { state: 's', verifier: 'v', returnTo: '/robots/lekiwi-LK0001?x=1' });
    expect(takePendingSignIn(storage)).toEqual({ state: 's', verifier: 'v', returnTo: '/robots/lekiwi-LK0001?x=1' });
    expect(takePendingSignIn(storage)).toBeNull();
    expect(storage.getItem(PENDING_SIGN_IN_KEY)).toBeNull();
  });

  it('drops damaged entries and never returns to another site', () => {
    const storage = memoryStorage();
    storage.setItem(PENDING_SIGN_IN_KEY, '{nope');
    expect(takePendingSignIn(storage)).toBeNull();
    expect(storage.getItem(PENDING_SIGN_IN_KEY)).toBeNull();
    expect(safeReturnTo('//evil.example/x')).toBe('/');
    expect(safeReturnTo('https://evil.example/')).toBe('/');
    expect(safeReturnTo('/\\evil.example')).toBe('/');
    expect(safeReturnTo('/alerts')).toBe('/alerts');
  });
});
