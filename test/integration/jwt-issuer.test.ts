import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTokenVerifier, InvalidToken } from '../../functions/platform/auth.js';
import { JwtAuthorizer } from '../../local/jwt-authorizer.js';
import { LocalJwtIssuer, SIGNING_KEY_FILE } from '../../local/jwt-issuer.js';

/**
 * The local issuer against both verifiers the cloud has: API Gateway's JWT authorizer (emulated) and the handlers'
 * createTokenVerifier, which fetches the JWKS over loopback HTTP as the local cloud's handlers do.
 */

const ISSUER = 'http://localhost:3999/local-pool';
const AUDIENCE = 'lekiwi-heartbeat-local';

let dir: string;
let issuer: LocalJwtIssuer;
let jwksServer: Server;
let jwksUri: string;

const decode = (token: string) => {
  const [header, payload] = token.split('.');
  return {
    header: JSON.parse(Buffer.from(header ?? '', 'base64url').toString()) as Record<string, unknown>,
    payload: JSON.parse(Buffer.from(payload ?? '', 'base64url').toString()) as Record<string, unknown>,
  };
};
const mode = async (file: string) => (await stat(file)).mode & 0o777;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'jwt-issuer-'));
  issuer = await LocalJwtIssuer.openOrCreate(path.join(dir, 'jwt'), { issuer: ISSUER, audience: AUDIENCE });
  jwksServer = createServer((request, response) => {
    if (request.url !== '/jwks.json') return void response.writeHead(404).end();
    response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(issuer.jwks()));
  });
  await new Promise<void>((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
  jwksUri = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks.json`;
});

afterAll(async () => {
  await new Promise((resolve) => jwksServer.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

const verifier = () => createTokenVerifier({ JWT_ISSUER: ISSUER, JWT_AUDIENCE: AUDIENCE, JWKS_URI: jwksUri });
const authorizerFor = (jwksOf: LocalJwtIssuer = issuer) => {
  const authorizer = new JwtAuthorizer({ issuer: ISSUER, audience: [AUDIENCE] });
  authorizer.cacheJwks(jwksOf.jwks());
  return authorizer;
};

describe('LocalJwtIssuer', () => {
  it('keeps an RSA 2048 private JWK, readable by the owner only, and publishes only its public half', async () => {
    const keyFile = path.join(dir, 'jwt', SIGNING_KEY_FILE);
    expect(issuer.keyFile).toBe(keyFile);
    expect(await mode(keyFile)).toBe(0o600);
    const stored = JSON.parse(await readFile(keyFile, 'utf8')) as Record<string, string>;
    expect(stored).toMatchObject({ kty: 'RSA', e: 'AQAB' });
    expect(Buffer.from(stored.n ?? '', 'base64url').length * 8).toBe(2048);
    for (const part of ['d', 'p', 'q', 'dp', 'dq', 'qi']) expect(typeof stored[part]).toBe('string');

    const jwks = issuer.jwks();
    expect(jwks.keys).toEqual([{ kty: 'RSA', n: stored.n, e: 'AQAB', kid: issuer.kid, alg: 'RS256', use: 'sig' }]);
    expect(JSON.stringify(jwks)).not.toContain(stored.d);
  });

  it('signs tokens shaped like Cognito id tokens', () => {
    const issuedAt = new Date('2026-11-22T10:00:00.000Z');
    const token = issuer.sign({ subject: 'user-7', username: 'ada', groups: ['engineer', 'beta'], expiresInSeconds: 600, issuedAt });
    const { header, payload } = decode(token);
    expect(header).toEqual({ kid: issuer.kid, alg: 'RS256', typ: 'JWT' });
    const iat = issuedAt.getTime() / 1000;
    expect(payload).toMatchObject({
      iss: ISSUER,
      aud: AUDIENCE,
      sub: 'user-7',
      'cognito:username': 'ada',
      'cognito:groups': ['engineer', 'beta'],
      token_use: 'id',
      iat,
      auth_time: iat,
      exp: iat + 600,
    });
    expect(typeof payload.jti).toBe('string');
  });

  it('issues tokens API Gateway’s JWT authorizer admits, with the groups flattened as API Gateway does', async () => {
    const token = issuer.sign({ subject: 'user-1', username: 'user-1', groups: ['operator', 'engineer'], expiresInSeconds: 60 });
    const result = await authorizerFor().authorize({ authorization: `Bearer ${token}` });
    expect(result).toMatchObject({ authorized: true, claims: { sub: 'user-1', 'cognito:groups': '[operator engineer]', token_use: 'id' } });
  });

  it('issues tokens the handlers’ verifier accepts, with the roles from the groups (JWKS fetched over loopback http)', async () => {
    const token = issuer.sign({ subject: 'user-2', username: 'user-2', groups: ['admin', 'not-a-role'], expiresInSeconds: 60 });
    await expect(verifier()(token)).resolves.toEqual({ userId: 'user-2', roles: ['admin'] });
  });

  it('issues expired tokens that both verifiers refuse', async () => {
    const token = issuer.sign({
      subject: 'user-3',
      username: 'user-3',
      groups: ['admin'],
      expiresInSeconds: 60,
      issuedAt: new Date(Date.now() - 3600_000),
    });
    expect(await authorizerFor().authorize({ authorization: `Bearer ${token}` })).toMatchObject({ authorized: false });
    await expect(verifier()(token)).rejects.toBeInstanceOf(InvalidToken);
  });

  it('keeps its key across openOrCreate: tokens signed before a restart still verify', async () => {
    const before = issuer.sign({ subject: 'user-4', username: 'user-4', groups: ['operator'], expiresInSeconds: 60 });
    const reopened = await LocalJwtIssuer.openOrCreate(path.join(dir, 'jwt'), { issuer: ISSUER, audience: AUDIENCE });
    expect(reopened.kid).toBe(issuer.kid);
    expect(await authorizerFor(reopened).authorize({ authorization: before })).toMatchObject({ authorized: true });
    const after = reopened.sign({ subject: 'user-4', username: 'user-4', groups: ['operator'], expiresInSeconds: 60 });
    await expect(verifier()(after)).resolves.toEqual({ userId: 'user-4', roles: ['operator'] });
  });

  it('has tokens of another issuer’s key refused', async () => {
    const stranger = await LocalJwtIssuer.openOrCreate(path.join(dir, 'stranger'), { issuer: ISSUER, audience: AUDIENCE });
    expect(stranger.kid).not.toBe(issuer.kid);
    const token = stranger.sign({ subject: 'mallory', username: 'mallory', groups: ['admin'], expiresInSeconds: 60 });
    expect(await authorizerFor().authorize({ authorization: token })).toMatchObject({ authorized: false });
    await expect(verifier()(token)).rejects.toBeInstanceOf(InvalidToken);
  });

  it('ends up with one key when two processes create it at once', async () => {
    const shared = path.join(dir, 'race');
    const [a, b, c] = await Promise.all([1, 2, 3].map(() => LocalJwtIssuer.openOrCreate(shared, { issuer: ISSUER, audience: AUDIENCE })));
    expect(new Set([a?.kid, b?.kid, c?.kid]).size).toBe(1);
  });

  it('writes a 12-hour dev token per role, mode 0600, each verifying with exactly its role', async () => {
    const tokensDir = path.join(dir, 'tokens');
    const paths = await issuer.writeDevTokens(tokensDir);
    expect(Object.keys(paths).sort()).toEqual(['admin', 'engineer', 'operator']);
    for (const [role, file] of Object.entries(paths)) {
      expect(file).toBe(path.join(tokensDir, `${role}.jwt`));
      expect(await mode(file)).toBe(0o600);
      const token = (await readFile(file, 'utf8')).trim();
      const { payload } = decode(token);
      expect((payload.exp as number) - (payload.iat as number)).toBe(12 * 3600);
      await expect(verifier()(token)).resolves.toEqual({ userId: `local-${role}`, roles: [role] });
    }
  });

  it('says which file is broken instead of replacing a damaged key', async () => {
    const broken = path.join(dir, 'broken');
    await LocalJwtIssuer.openOrCreate(broken, { issuer: ISSUER, audience: AUDIENCE });
    await writeFile(path.join(broken, SIGNING_KEY_FILE), '{"kty":"RSA","n":"abc"}');
    await expect(LocalJwtIssuer.openOrCreate(broken, { issuer: ISSUER, audience: AUDIENCE })).rejects.toThrow(
      /signing-key\.json is not a private RSA JWK \(bad .*\bd\b/,
    );
    await writeFile(path.join(broken, SIGNING_KEY_FILE), 'not json');
    await expect(LocalJwtIssuer.openOrCreate(broken, { issuer: ISSUER, audience: AUDIENCE })).rejects.toThrow(/signing-key\.json is not JSON/);
  });

  it('refuses bad options with the field named', async () => {
    expect(() => issuer.sign({ subject: '', username: 'u', groups: [], expiresInSeconds: 60 })).toThrow(/subject/);
    expect(() => issuer.sign({ subject: 's', username: 'u', groups: [], expiresInSeconds: 0 })).toThrow(/expiresInSeconds/);
    await expect(LocalJwtIssuer.openOrCreate(path.join(dir, 'x'), { issuer: 'not a url', audience: AUDIENCE })).rejects.toThrow(/issuer/);
  });
});
