/**
 * PKCE (RFC 7636) with the S256 method, on WebCrypto (the browser's `crypto`, or Node 20's `globalThis.crypto`).
 * The verifier is 32 random bytes in base64url (43 characters, inside RFC 7636's 43–128); the challenge is the
 * base64url SHA-256 of the verifier's ASCII. `state` is 16 random bytes in base64url.
 */

/** The part of WebCrypto this needs (the DOM's `Crypto` and Node's `webcrypto` both fit). */
export interface RandomAndDigest {
  getRandomValues<T extends Uint8Array<ArrayBuffer>>(array: T): T;
  readonly subtle: { digest(algorithm: 'SHA-256', data: Uint8Array<ArrayBuffer>): Promise<ArrayBuffer> };
}

export function base64Url(bytes: Uint8Array): string {
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export function randomToken(crypto: RandomAndDigest, byteLength: number): string {
  return base64Url(crypto.getRandomValues(new Uint8Array(byteLength)));
}

export function createVerifier(crypto: RandomAndDigest): string {
  return randomToken(crypto, 32);
}

export function createState(crypto: RandomAndDigest): string {
  return randomToken(crypto, 16);
}

export async function challengeOf(verifier: string, crypto: RandomAndDigest): Promise<string> {
  if (!/^[A-Za-z0-9\-._~]{43,128}$/.test(verifier)) {
    throw new Error('A PKCE verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~ (RFC 7636 section 4.1)');
  }
  const digest = await crypto.subtle.digest('SHA-256', new Uint8Array(new TextEncoder().encode(verifier)));
  return base64Url(new Uint8Array(digest));
}
