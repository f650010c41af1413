/**
 * What the page must remember across the trip to the issuer and back, and only for that trip: the `state` it sent,
 * the PKCE verifier, and the page URL to come back to. Kept in sessionStorage (this tab only) under one key and
 * deleted as soon as the browser is back, whatever the outcome. Tokens are never stored.
 */
export const PENDING_SIGN_IN_KEY = 'lekiwi-heartbeat.pending-sign-in';

export interface PendingSignIn {
  readonly state: string;
  readonly verifier: string;
  /** path + query + hash of the page the user was on. */
  readonly returnTo: string;
}

export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export function savePendingSignIn(storage: StorageLike, pending: PendingSignIn): void {
  storage.setItem(PENDING_SIGN_IN_KEY, JSON.stringify(pending));
}

/** The pending sign-in, removed from storage (it is good for one return only); null when there is none or it is damaged. */
export function takePendingSignIn(storage: StorageLike): PendingSignIn | null {
  const raw = storage.getItem(PENDING_SIGN_IN_KEY);
  storage.removeItem(PENDING_SIGN_IN_KEY);
  if (raw === null) return null;
  try {
    const value: unknown = JSON.parse(raw);
    if (typeof value !== 'object' || value === null) return null;
    const { state, verifier, returnTo } = value as Record<string, unknown>;
    if (typeof state !== 'string' || typeof verifier !== 'string' || typeof returnTo !== 'string') return null;
    return { state, verifier, returnTo: safeReturnTo(returnTo) };
  } catch {
    return null;
  }
}

/** Only a path on this origin (never `//host` or a scheme): the saved URL cannot send the user elsewhere. */
export function safeReturnTo(returnTo: string): string {
  return returnTo.startsWith('/') && !returnTo.startsWith('//') && !returnTo.startsWith('/\\') ? returnTo : '/';
}
