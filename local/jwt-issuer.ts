import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPair,
  randomUUID,
  sign as signBytes,
  type JsonWebKey,
  type KeyObject,
} from 'node:crypto';
import { chmod, link, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { ROLES, type Role } from '../schemas/index.js';

/**
 * The local cloud's stand-in for Cognito's token endpoint: one RSA 2048 key (RS256, since API Gateway's JWT
 * authorizers take RSA only), kept as a private JWK in `<dir>/signing-key.json` (mode 0600) so tokens handed out
 * survive a restart, its public half served as a JWKS, and tokens shaped like Cognito id tokens (`aud` = the app
 * client, `cognito:groups` = the fleet roles, `token_use: id`). Only node:crypto, so nothing extra at run time.
 */

export interface LocalJwtIssuerOptions {
  /** Exactly what tokens carry in `iss` and verifiers expect as JWT_ISSUER. */
  readonly issuer: string;
  /** The app client id: the tokens' `aud`, the verifiers' JWT_AUDIENCE. */
  readonly audience: string;
}

export interface SignOptions {
  readonly subject: string;
  readonly username: string;
  readonly groups: readonly string[];
  readonly expiresInSeconds: number;
  /** When the token counts as issued (now by default); tests use it for expired tokens. */
  readonly issuedAt?: Date;
}

/** Type aliases, not interfaces, so they fit aws-jwt-verify's JSON-typed `Jwks` (e.g. `JwtAuthorizer.cacheJwks`). */
export type PublicJwk = {
  readonly kty: 'RSA';
  readonly n: string;
  readonly e: string;
  readonly kid: string;
  readonly alg: 'RS256';
  readonly use: 'sig';
};

export type Jwks = { keys: PublicJwk[] };

/** Development tokens last a working day. */
export const DEV_TOKEN_VALIDITY_SECONDS = 12 * 3600;
export const SIGNING_KEY_FILE = 'signing-key.json';

const base64url = z.string().min(1).regex(/^[A-Za-z0-9_-]+$/, 'must be base64url');
const StoredKey = z.object({
  kty: z.literal('RSA'),
  n: base64url,
  e: base64url,
  d: base64url,
  p: base64url,
  q: base64url,
  dp: base64url,
  dq: base64url,
  qi: base64url,
});

const SignInput = z.object({
  subject: z.string().min(1).max(128),
  username: z.string().min(1).max(128),
  groups: z.array(z.string().min(1).max(128)).max(100),
  // Cognito allows id tokens of 5 minutes to a day; locally up to 30 days.
  expiresInSeconds: z.number().int().min(1).max(30 * 24 * 3600),
  issuedAt: z.date().optional(),
});

export class LocalJwtIssuer {
  readonly issuer: string;
  readonly audience: string;
  /** The RFC 7638 thumbprint of the public key, as the tokens' and the JWKS's `kid`. */
  readonly kid: string;
  readonly keyFile: string;
  private readonly privateKey: KeyObject;
  private readonly publicJwk: PublicJwk;

  private constructor(options: LocalJwtIssuerOptions, privateKey: KeyObject, keyFile: string) {
    this.issuer = options.issuer;
    this.audience = options.audience;
    this.keyFile = keyFile;
    this.privateKey = privateKey;
    const { n, e } = createPublicKey(privateKey).export({ format: 'jwk' });
    if (typeof n !== 'string' || typeof e !== 'string') throw new Error('the signing key has no RSA modulus/exponent');
    this.kid = thumbprint(n, e);
    this.publicJwk = { kty: 'RSA', n, e, kid: this.kid, alg: 'RS256', use: 'sig' };
  }

  /**
   * The issuer whose key is in `dir`, creating the key (and the directory, mode 0700) on first use. Two processes
   * starting together end up with the same key: the file is created by a hard link, which only one of them wins.
   */
  static async openOrCreate(dir: string, options: LocalJwtIssuerOptions): Promise<LocalJwtIssuer> {
    if (!z.url().safeParse(options.issuer).success) throw new Error(`issuer must be a URL, got ${JSON.stringify(options.issuer)}`);
    if (options.audience.trim() === '') throw new Error('audience must not be empty');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const keyFile = path.join(dir, SIGNING_KEY_FILE);
    const existing = await readKey(keyFile);
    if (existing) return new LocalJwtIssuer(options, existing, keyFile);

    const created = await newRsaKey();
    const jwk = created.export({ format: 'jwk' });
    const temporary = `${keyFile}.${process.pid}.${randomUUID()}.tmp`;
    await writeFile(temporary, `${JSON.stringify(jwk, null, 2)}\n`, { mode: 0o600, flag: 'wx' });
    try {
      await link(temporary, keyFile);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    } finally {
      await rm(temporary, { force: true });
    }
    const stored = await readKey(keyFile);
    if (!stored) throw new Error(`${keyFile} vanished right after it was written`);
    return new LocalJwtIssuer(options, stored, keyFile);
  }

  jwks(): Jwks {
    return { keys: [{ ...this.publicJwk }] };
  }

  /**
   * A token shaped like a Cognito access token for the app client: `client_id` and `scope` instead of `aud`,
   * `token_use: access`, `username`. API Gateway's JWT authorizer accepts it as it accepts the id token.
   */
  signAccessToken(options: SignOptions & { readonly scopes: readonly string[] }): string {
    return this.sign(options, { tokenUse: 'access', scopes: options.scopes });
  }

  /** A token shaped like a Cognito id token. */
  sign(options: SignOptions, shape: { readonly tokenUse: 'id' | 'access'; readonly scopes?: readonly string[] } = { tokenUse: 'id' }): string {
    const parsed = SignInput.safeParse(options);
    if (!parsed.success) {
      const problems = parsed.error.issues.map((issue) => `${issue.path.join('.') || 'options'} ${issue.message}`);
      throw new Error(`Cannot sign a token: ${problems.join('; ')}`);
    }
    const { subject, username, groups, expiresInSeconds } = parsed.data;
    const issuedAt = Math.floor((parsed.data.issuedAt ?? new Date()).getTime() / 1000);
    const header = { kid: this.kid, alg: 'RS256', typ: 'JWT' };
    const audience =
      shape.tokenUse === 'id'
        ? { 'cognito:username': username, aud: this.audience }
        : { client_id: this.audience, scope: (shape.scopes ?? []).join(' '), username };
    const payload = {
      sub: subject,
      'cognito:groups': groups,
      iss: this.issuer,
      ...audience,
      origin_jti: randomUUID(),
      event_id: randomUUID(),
      token_use: shape.tokenUse,
      auth_time: issuedAt,
      exp: issuedAt + expiresInSeconds,
      iat: issuedAt,
      jti: randomUUID(),
    };
    const signingInput = `${encode(header)}.${encode(payload)}`;
    const signature = signBytes('sha256', Buffer.from(signingInput), this.privateKey).toString('base64url');
    return `${signingInput}.${signature}`;
  }

  /**
   * `admin.jwt`, `engineer.jwt` and `operator.jwt` in `tokensDir` (mode 0600), each for a user in that one group,
   * valid for 12 hours. Returns their paths by role.
   */
  async writeDevTokens(tokensDir: string): Promise<Record<Role, string>> {
    await mkdir(tokensDir, { recursive: true, mode: 0o700 });
    const paths = {} as Record<Role, string>;
    for (const role of ROLES) {
      const file = path.join(tokensDir, `${role}.jwt`);
      const token = this.sign({
        subject: `local-${role}`,
        username: `local-${role}`,
        groups: [role],
        expiresInSeconds: DEV_TOKEN_VALIDITY_SECONDS,
      });
      await writeFile(file, `${token}\n`, { mode: 0o600 });
      // `mode` applies only to a new file; an older token file keeps whatever mode it had otherwise.
      await chmod(file, 0o600);
      paths[role] = file;
    }
    return paths;
  }
}

async function readKey(keyFile: string): Promise<KeyObject | null> {
  let text: string;
  try {
    text = await readFile(keyFile, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error(`${keyFile} is not JSON; delete it to make a new signing key (tokens handed out so far stop working)`);
  }
  const parsed = StoredKey.safeParse(json);
  if (!parsed.success) {
    const fields = [...new Set(parsed.error.issues.map((issue) => issue.path.join('.') || '(root)'))];
    throw new Error(`${keyFile} is not a private RSA JWK (bad ${fields.join(', ')}); delete it to make a new signing key`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: parsed.data as JsonWebKey, format: 'jwk' });
  } catch (error) {
    throw new Error(`${keyFile} holds an RSA key node:crypto cannot use: ${(error as Error).message}`);
  }
  const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
  if (bits < 2048) throw new Error(`${keyFile} holds a ${bits}-bit RSA key; 2048 bits at least`);
  // Someone may have copied the file in with a looser mode; it is a private key.
  if (((await stat(keyFile)).mode & 0o077) !== 0) await chmod(keyFile, 0o600);
  return key;
}

function newRsaKey(): Promise<KeyObject> {
  return new Promise((resolve, reject) => {
    generateKeyPair('rsa', { modulusLength: 2048, publicExponent: 0x10001 }, (error, _publicKey, privateKey) =>
      error ? reject(error) : resolve(privateKey),
    );
  });
}

function encode(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

/** RFC 7638: SHA-256 over the required members in lexicographic order. */
function thumbprint(n: string, e: string): string {
  return createHash('sha256').update(JSON.stringify({ e, kty: 'RSA', n })).digest('base64url');
}
