import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DashboardConfig } from '../../schemas/index.js';
import { localDashboard, type LocalDashboard } from '../../local/dashboard-host.js';
import { startHttpGateway, type ExtraRouteHandler, type HttpGateway } from '../../local/http-gateway.js';
import { LocalJwtIssuer } from '../../local/jwt-issuer.js';
import { CODE_TTL_MS, s256, SESSION_COOKIE } from '../../local/oauth-endpoints.js';

/**
 * The dashboard as the local cloud serves it, over real HTTP through the HTTP gateway: a fixture build of the page
 * (its files, SPA fallback, caching, security headers, no path out of the directory), `/config.json`, and the sign-in
 * (authorization code + PKCE, as Cognito's hosted UI) end to end with fetch, down to a token the API's JWT authorizer
 * accepts.
 */

const ISSUER = 'http://localhost:1';
const AUDIENCE = 'lekiwi-heartbeat-local';
const WEB_SOCKET_URL = 'ws://localhost:3901';
const INDEX_HTML = '<!doctype html>\n<html lang="en"><head><title>Lekiwi Heartbeat</title><script type="module" src="/assets/app-3f9a.js"></script></head><body><div id="root"></div></body></html>\n';
const SECRET = 'the private key next door';

let dir: string;
let distDir: string;
let issuer: LocalJwtIssuer;
let gateway: HttpGateway;
let dashboard: LocalDashboard;
let origin: string;
/** The OAuth endpoints' clock: tests move it to expire codes. */
let clock = Date.now();
const apiCalls: { routeKey: string; claims: Record<string, unknown> }[] = [];

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'dashboard-serving-'));
  distDir = path.join(dir, 'dist');
  await mkdir(path.join(distDir, 'assets'), { recursive: true });
  await writeFile(path.join(distDir, 'index.html'), INDEX_HTML);
  await writeFile(path.join(distDir, 'assets', 'app-3f9a.js'), 'console.log("dashboard");\n');
  await writeFile(path.join(distDir, 'assets', 'app-3f9a.css'), 'body{margin:0}\n');
  await writeFile(path.join(distDir, 'favicon.svg'), '<svg xmlns="http://www.w3.org/2000/svg"/>');
  await writeFile(path.join(distDir, '.build-stamp'), 'stamp\n');
  await writeFile(path.join(dir, 'secret.txt'), SECRET);
  await symlink(path.join(dir, 'secret.txt'), path.join(distDir, 'leak.txt'));
  issuer = await LocalJwtIssuer.openOrCreate(path.join(dir, 'jwt'), { issuer: ISSUER, audience: AUDIENCE });

  // The gateway's port is known once it listens; its routes reach the dashboard made for that port.
  const route = (key: string): ExtraRouteHandler => (request) => dashboard.routes[key]!(request);
  gateway = await startHttpGateway({
    authorizer: { issuer: ISSUER, audience: [AUDIENCE] },
    jwks: () => issuer.jwks(),
    integration: async (event) => {
      apiCalls.push({ routeKey: event.routeKey, claims: event.requestContext.authorizer?.jwt?.claims ?? {} });
      return { items: [], nextCursor: null };
    },
    extraRoutes: Object.fromEntries(
      ['GET /config.json', 'GET /oauth2/authorize', 'POST /oauth2/authorize', 'POST /oauth2/token', 'GET /logout'].map((key) => [key, route(key)]),
    ),
    site: (request) => dashboard.site(request),
    log: () => undefined,
  });
  origin = `http://127.0.0.1:${gateway.port}`;
  dashboard = localDashboard({
    distDir,
    origins: [origin, `http://localhost:${gateway.port}`],
    webSocketUrl: WEB_SOCKET_URL,
    issuer,
    now: () => clock,
  });
});

afterAll(async () => {
  await gateway?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** A request exactly as written (fetch would normalise `..` and encode the path), with an optional Host. */
function raw(target: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest({ host: '127.0.0.1', port: gateway.port, path: target, headers }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8'), headers: response.headers }));
    });
    request.on('error', reject);
    request.end();
  });
}

describe('the page', () => {
  it('serves index.html at / with no token in it, never cached, with the headers CloudFront sets', async () => {
    const response = await fetch(`${origin}/`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(response.headers.get('cache-control')).toBe('no-store');
    const body = await response.text();
    expect(body).toBe(INDEX_HTML);
    expect(body).not.toMatch(/eyJ[A-Za-z0-9_-]+\.eyJ/);
    const policy = response.headers.get('content-security-policy') ?? '';
    expect(policy).toContain("default-src 'self'");
    expect(policy).toContain("script-src 'self'");
    expect(policy).toContain(`connect-src 'self' ${WEB_SOCKET_URL}`);
    expect(policy).toContain("frame-ancestors 'none'");
    expect(policy).not.toContain('unsafe');
    expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    expect(response.headers.get('referrer-policy')).toBe('no-referrer');
    expect(response.headers.get('x-frame-options')).toBe('DENY');
  });

  it.each(['/alerts', '/robots/lekiwi-LK0001', '/robots/xle-XL0002?tab=events', '/?status=online&sel=a,b', '/index.html'])(
    'answers the page for the client-side route %s',
    async (target) => {
      const response = await fetch(`${origin}${target}`);
      expect(response.status).toBe(200);
      expect(response.headers.get('cache-control')).toBe('no-store');
      expect(await response.text()).toBe(INDEX_HTML);
    },
  );

  it('serves hashed assets with their type, cached for good, and other files revalidated', async () => {
    const script = await fetch(`${origin}/assets/app-3f9a.js`);
    expect(script.status).toBe(200);
    expect(script.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(script.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    expect(script.headers.get('x-content-type-options')).toBe('nosniff');
    expect(await script.text()).toBe('console.log("dashboard");\n');
    const style = await fetch(`${origin}/assets/app-3f9a.css`);
    expect(style.headers.get('content-type')).toBe('text/css; charset=utf-8');
    const icon = await fetch(`${origin}/favicon.svg`);
    expect(icon.headers.get('content-type')).toBe('image/svg+xml');
    expect(icon.headers.get('cache-control')).toBe('no-cache');
    const head = await fetch(`${origin}/assets/app-3f9a.js`, { method: 'HEAD' });
    expect(head.status).toBe(200);
    expect(head.headers.get('content-length')).toBe(String('console.log("dashboard");\n'.length));
  });

  it.each(['/nope', '/alerts/extra', '/robots/', '/robots/a/b', '/assets/missing-1234.js', '/assets', '/.build-stamp'])(
    'answers 404, not the page, for %s',
    async (target) => {
      const response = await fetch(`${origin}${target}`);
      expect(response.status).toBe(404);
      expect(await response.text()).not.toContain('<html');
    },
  );

  it('leaves /api/ to the API (its own JSON 404 and authorizer), and takes only GET and HEAD', async () => {
    const unknown = await fetch(`${origin}/api/v2/nothing-here`);
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toEqual({ message: 'Not Found' });
    expect((await fetch(`${origin}/api/v2/robots`)).status).toBe(401);
    const post = await fetch(`${origin}/alerts`, { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });

  it.each([
    '/../secret.txt',
    '/assets/../../secret.txt',
    '/%2e%2e/secret.txt',
    '/assets/%2e%2e%2f%2e%2e%2fsecret.txt',
    '/robots/..%2f..%2fsecret.txt',
    '/..%5csecret.txt',
    '/%5c..%5csecret.txt',
    '/assets/%00.js',
    '/leak.txt',
    `/${'%'}zz`,
  ])('never serves anything outside the build: %s', async (target) => {
    const response = await raw(target);
    expect([400, 404]).toContain(response.status);
    expect(response.body).not.toContain(SECRET);
  });

  it('says how to build the dashboard when there is no build', async () => {
    const empty = localDashboard({ distDir: path.join(dir, 'no-dist'), origins: [origin], webSocketUrl: WEB_SOCKET_URL, issuer });
    const answer = await empty.site({ method: 'GET', url: '/', resume: () => undefined } as never);
    expect(answer.statusCode).toBe(503);
    expect(String(answer.body)).toMatch(/npm start builds it/);
  });
});

describe('/config.json', () => {
  it('is a valid DashboardConfig with the local endpoints on the origin the browser used', async () => {
    for (const host of [`127.0.0.1:${gateway.port}`, `localhost:${gateway.port}`]) {
      const response = await raw('/config.json', { host });
      expect(response.status).toBe(200);
      expect(response.headers['content-type']).toBe('application/json');
      expect(response.headers['cache-control']).toBe('no-store');
      const config = DashboardConfig.parse(JSON.parse(response.body));
      expect(config).toEqual({
        stage: 'local',
        apiBaseUrl: '/api/v2',
        webSocketUrl: WEB_SOCKET_URL,
        auth: {
          authorizeUrl: `http://${host}/oauth2/authorize`,
          tokenUrl: `http://${host}/oauth2/token`,
          logoutUrl: `http://${host}/logout`,
          clientId: AUDIENCE,
          scopes: ['openid', 'email', 'profile'],
        },
      });
      expect(response.body).not.toMatch(/eyJ/);
    }
  });

  it('does not echo a Host it does not serve', async () => {
    const config = JSON.parse((await raw('/config.json', { host: 'evil.example' })).body) as DashboardConfig;
    expect(config.auth.authorizeUrl).toBe(`${origin}/oauth2/authorize`);
  });
});

// ---- Sign-in ----

const verifier = () => randomBytes(48).toString('base64url');
const redirectUri = () => `${origin}/`;

function authorizeUrl(overrides: Record<string, string | null> = {}, challenge = s256(verifier())): string {
  const url = new URL(`${origin}/oauth2/authorize`);
  const params: Record<string, string | null> = {
    response_type: 'code',
    client_id: AUDIENCE,
    redirect_uri: redirectUri(),
    state: 'state-42',
    code_challenge: challenge,
    code_challenge_method: 'S256',
    scope: 'openid email profile',
    ...overrides,
  };
  for (const [name, value] of Object.entries(params)) if (value !== null) url.searchParams.set(name, value);
  return url.toString();
}

const cookieHeader = (setCookies: string[]) => setCookies.map((cookie) => cookie.split(';')[0]).filter((pair) => !pair!.endsWith('=')).join('; ');

/** The sign-in page's form: its hidden fields, its role buttons, and the cookies that came with it. */
async function signInForm(url: string, cookies = '') {
  const response = await fetch(url, { redirect: 'manual', headers: cookies ? { cookie: cookies } : {} });
  expect(response.status).toBe(200);
  const html = await response.text();
  const unescape = (value: string) => value.replace(/&#(\d+);/g, (_, code: string) => String.fromCharCode(Number(code)));
  const fields = new URLSearchParams();
  for (const [, name, value] of html.matchAll(/<input type="hidden" name="([^"]*)" value="([^"]*)">/g)) fields.append(unescape(name!), unescape(value!));
  const roles = [...html.matchAll(/<button type="submit" name="role" value="([a-z]+)">/g)].map((match) => match[1]);
  return { response, html, fields, roles, cookies: cookieHeader(response.headers.getSetCookie()) };
}

/** Signs in as `role` through the form; the code, and the session cookie the browser now holds. */
async function signIn(role: string, challenge: string, state = 'state-42') {
  const form = await signInForm(authorizeUrl({ state }, challenge));
  form.fields.set('role', role);
  const response = await fetch(`${origin}/oauth2/authorize`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: form.cookies },
    body: form.fields.toString(),
  });
  expect(response.status).toBe(302);
  const location = new URL(response.headers.get('location') ?? '');
  return { location, code: location.searchParams.get('code') ?? '', setCookies: response.headers.getSetCookie() };
}

async function token(fields: Record<string, string>, contentType = 'application/x-www-form-urlencoded') {
  const response = await fetch(`${origin}/oauth2/token`, {
    method: 'POST',
    headers: { 'content-type': contentType },
    body: new URLSearchParams(fields).toString(),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown>, cacheControl: response.headers.get('cache-control') };
}

const exchange = (code: string, codeVerifier: string, redirect = redirectUri()) =>
  token({ grant_type: 'authorization_code', client_id: AUDIENCE, code, redirect_uri: redirect, code_verifier: codeVerifier });

const claimsOf = (jwt: string) => JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;

describe('sign-in (authorization code + PKCE, as Cognito)', () => {
  it('offers the three roles as buttons of a form, with the request carried in it, and no script', async () => {
    const form = await signInForm(authorizeUrl());
    expect(form.roles).toEqual(['admin', 'engineer', 'operator']);
    expect(form.html).not.toContain('<script');
    expect(form.html).toContain('<form method="post" action="/oauth2/authorize">');
    expect(form.html).toMatch(/<legend>Sign in as<\/legend>/);
    expect(form.fields.get('redirect_uri')).toBe(redirectUri());
    expect(form.fields.get('state')).toBe('state-42');
    expect(form.fields.get('_xsrf')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(form.response.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    expect(form.response.headers.get('cache-control')).toBe('no-store');
  });

  it('signs in: the code for the right verifier gives id, access and refresh tokens; the id token passes the API authorizer', async () => {
    const codeVerifier = verifier();
    const { location, code, setCookies } = await signIn('engineer', s256(codeVerifier), 'state <&> 42');
    expect(`${location.origin}${location.pathname}`).toBe(redirectUri());
    expect(location.searchParams.get('state')).toBe('state <&> 42');
    const session = setCookies.find((cookie) => cookie.startsWith(`${SESSION_COOKIE}=`));
    expect(session).toMatch(/; HttpOnly/);
    expect(session).toMatch(/; SameSite=Lax/);

    const answer = await exchange(code, codeVerifier);
    expect(answer.status).toBe(200);
    expect(answer.cacheControl).toBe('no-store');
    expect(answer.body).toEqual({
      id_token: expect.any(String),
      access_token: expect.any(String),
      refresh_token: expect.any(String),
      expires_in: 3600,
      token_type: 'Bearer',
    });
    const id = claimsOf(answer.body.id_token as string);
    expect(id).toMatchObject({ 'cognito:groups': ['engineer'], 'cognito:username': 'dev-engineer', aud: AUDIENCE, iss: ISSUER, token_use: 'id' });
    expect(claimsOf(answer.body.access_token as string)).toMatchObject({ client_id: AUDIENCE, token_use: 'access', scope: 'openid email profile' });

    for (const bearer of [answer.body.id_token, answer.body.access_token]) {
      const robots = await fetch(`${origin}/api/v2/robots`, { headers: { authorization: `Bearer ${bearer as string}` } });
      expect(robots.status).toBe(200);
      expect(await robots.json()).toEqual({ items: [], nextCursor: null });
    }
    expect(apiCalls.at(-2)?.claims).toMatchObject({ 'cognito:username': 'dev-engineer', 'cognito:groups': '[engineer]' });
  });

  it('redeems a code once only', async () => {
    const codeVerifier = verifier();
    const { code } = await signIn('operator', s256(codeVerifier));
    expect((await exchange(code, codeVerifier)).status).toBe(200);
    expect(await exchange(code, codeVerifier)).toMatchObject({ status: 400, body: { error: 'invalid_grant' } });
  });

  it('refuses a wrong verifier, and the code is spent by the attempt', async () => {
    const codeVerifier = verifier();
    const { code } = await signIn('admin', s256(codeVerifier));
    expect(await exchange(code, verifier())).toMatchObject({ status: 400, body: { error: 'invalid_grant' } });
    expect(await exchange(code, codeVerifier)).toMatchObject({ status: 400, body: { error: 'invalid_grant' } });
  });

  it('refuses a code after its five minutes', async () => {
    const codeVerifier = verifier();
    const { code } = await signIn('admin', s256(codeVerifier));
    clock += CODE_TTL_MS + 1_000;
    try {
      expect(await exchange(code, codeVerifier)).toMatchObject({ status: 400, body: { error: 'invalid_grant' } });
    } finally {
      clock -= CODE_TTL_MS + 1_000;
    }
  });

  it('refuses a code for another redirect_uri, and never redirects to a URI that is not a callback', async () => {
    const codeVerifier = verifier();
    const { code } = await signIn('admin', s256(codeVerifier));
    expect(await exchange(code, codeVerifier, `http://localhost:${gateway.port}/`)).toMatchObject({ status: 400, body: { error: 'invalid_grant' } });

    for (const foreign of ['https://evil.example/', `${origin}/alerts`, `${origin}`]) {
      const response = await fetch(authorizeUrl({ redirect_uri: foreign }), { redirect: 'manual' });
      expect(response.status).toBe(400);
      expect(response.headers.get('location')).toBeNull();
      expect(await response.text()).toContain('redirect_mismatch');
    }
  });

  it('answers a bad authorize request as Cognito does: an error page for the client, a redirect with error= otherwise', async () => {
    const unknownClient = await fetch(authorizeUrl({ client_id: 'someone-else' }), { redirect: 'manual' });
    expect(unknownClient.status).toBe(400);
    expect(unknownClient.headers.get('location')).toBeNull();

    for (const [overrides, error] of [
      [{ response_type: 'token' }, 'unsupported_response_type'],
      [{ response_type: null }, 'unsupported_response_type'],
      [{ code_challenge: null }, 'invalid_request'],
      [{ code_challenge_method: 'plain' }, 'invalid_request'],
      [{ code_challenge_method: null }, 'invalid_request'],
      [{ code_challenge: 'too-short' }, 'invalid_request'],
      [{ scope: 'openid aws.cognito.signin.user.admin' }, 'invalid_scope'],
    ] as const) {
      const response = await fetch(authorizeUrl(overrides), { redirect: 'manual' });
      expect(response.status, JSON.stringify(overrides)).toBe(302);
      const location = new URL(response.headers.get('location') ?? '');
      expect(`${location.origin}${location.pathname}`).toBe(redirectUri());
      expect(location.searchParams.get('error'), JSON.stringify(overrides)).toBe(error);
      expect(location.searchParams.get('error_description')).toBeTruthy();
      expect(location.searchParams.get('state')).toBe('state-42');
      expect(location.searchParams.get('code')).toBeNull();
    }
  });

  it('refuses a form posted without its XSRF token, or with an unknown role', async () => {
    const form = await signInForm(authorizeUrl());
    form.fields.set('role', 'admin');
    const post = (cookie: string, body: URLSearchParams) =>
      fetch(`${origin}/oauth2/authorize`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded', cookie }, body: body.toString() });
    expect((await post('', form.fields)).status).toBe(403);
    const forged = new URLSearchParams(form.fields);
    forged.set('_xsrf', 'x'.repeat(43));
    expect((await post(form.cookies, forged)).status).toBe(403);
    const unknownRole = new URLSearchParams(form.fields);
    unknownRole.set('role', 'root');
    expect((await post(form.cookies, unknownRole)).status).toBe(400);
  });

  it('refreshes: new id and access tokens for a refresh token, invalid_grant for an unknown one', async () => {
    const codeVerifier = verifier();
    const { code } = await signIn('operator', s256(codeVerifier));
    const first = await exchange(code, codeVerifier);
    const refreshed = await token({ grant_type: 'refresh_token', client_id: AUDIENCE, refresh_token: first.body.refresh_token as string });
    expect(refreshed.status).toBe(200);
    expect(refreshed.body).toEqual({ id_token: expect.any(String), access_token: expect.any(String), expires_in: 3600, token_type: 'Bearer' });
    expect(refreshed.body.id_token).not.toBe(first.body.id_token);
    expect(claimsOf(refreshed.body.id_token as string)).toMatchObject({ 'cognito:groups': ['operator'], 'cognito:username': 'dev-operator' });
    const robots = await fetch(`${origin}/api/v2/robots`, { headers: { authorization: `Bearer ${refreshed.body.id_token as string}` } });
    expect(robots.status).toBe(200);

    expect(await token({ grant_type: 'refresh_token', client_id: AUDIENCE, refresh_token: 'not-a-token' })).toMatchObject({ status: 400, body: { error: 'invalid_grant' } });
  });

  it('answers OAuth errors from the token endpoint for a bad request', async () => {
    expect(await token({ grant_type: 'authorization_code', client_id: 'someone-else', code: 'c', redirect_uri: redirectUri(), code_verifier: verifier() })).toMatchObject({
      status: 400,
      body: { error: 'invalid_client' },
    });
    expect(await token({ grant_type: 'password', client_id: AUDIENCE })).toMatchObject({ status: 400, body: { error: 'unsupported_grant_type' } });
    expect(await token({ grant_type: 'authorization_code', client_id: AUDIENCE })).toMatchObject({ status: 400, body: { error: 'invalid_request' } });
    expect(await token({ grant_type: 'refresh_token', client_id: AUDIENCE, refresh_token: 'x' }, 'application/json')).toMatchObject({
      status: 400,
      body: { error: 'invalid_request' },
    });
  });

  it('remembers the sign-in in a session cookie until /logout, which sends the browser to logout_uri', async () => {
    const codeVerifier = verifier();
    const { setCookies } = await signIn('admin', s256(codeVerifier));
    const session = cookieHeader(setCookies);
    expect(session).toMatch(new RegExp(`^${SESSION_COOKIE}=`));

    // A reload: straight back with a code, no form.
    const again = verifier();
    const quick = await fetch(authorizeUrl({ state: 'reload' }, s256(again)), { redirect: 'manual', headers: { cookie: session } });
    expect(quick.status).toBe(302);
    const location = new URL(quick.headers.get('location') ?? '');
    expect(location.searchParams.get('state')).toBe('reload');
    const tokens = await exchange(location.searchParams.get('code') ?? '', again);
    expect(claimsOf(tokens.body.id_token as string)['cognito:groups']).toEqual(['admin']);

    const logout = await fetch(`${origin}/logout?client_id=${AUDIENCE}&logout_uri=${encodeURIComponent(redirectUri())}`, {
      redirect: 'manual',
      headers: { cookie: session },
    });
    expect(logout.status).toBe(302);
    expect(logout.headers.get('location')).toBe(redirectUri());
    expect(logout.headers.getSetCookie().some((cookie) => cookie.startsWith(`${SESSION_COOKIE}=;`) && cookie.includes('Max-Age=0'))).toBe(true);

    // The old cookie no longer signs in: the form again.
    const form = await signInForm(authorizeUrl(), session);
    expect(form.roles).toEqual(['admin', 'engineer', 'operator']);
  });

  it('refuses a logout to a URI that is not a sign-out URL, or for another client', async () => {
    const foreign = await fetch(`${origin}/logout?client_id=${AUDIENCE}&logout_uri=${encodeURIComponent('https://evil.example/')}`, { redirect: 'manual' });
    expect(foreign.status).toBe(400);
    expect(foreign.headers.get('location')).toBeNull();
    const otherClient = await fetch(`${origin}/logout?client_id=x&logout_uri=${encodeURIComponent(redirectUri())}`, { redirect: 'manual' });
    expect(otherClient.status).toBe(400);
  });
});
