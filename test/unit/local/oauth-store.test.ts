import { describe, expect, it } from 'vitest';
import { ExpiringStore, parseCookies, s256 } from '../../../local/oauth-endpoints.js';

/** The local sign-in's small parts: the store of codes, refresh tokens and sessions; cookies; PKCE's S256. */

describe('ExpiringStore', () => {
  it('forgets a value when its time is up', () => {
    let now = 1_000;
    const store = new ExpiringStore<string>(() => now);
    store.set('code', 'engineer', 300);
    now += 299;
    expect(store.get('code')).toBe('engineer');
    now += 1;
    expect(store.get('code')).toBeUndefined();
    expect(store.size).toBe(0);
  });

  it('hands a value out once with take', () => {
    const store = new ExpiringStore<string>(() => 0);
    store.set('code', 'admin', 300);
    expect(store.take('code')).toBe('admin');
    expect(store.take('code')).toBeUndefined();
    expect(store.get('code')).toBeUndefined();
  });

  it('drops expired entries as new ones come, and the oldest past its capacity', () => {
    let now = 0;
    const store = new ExpiringStore<number>(() => now, 3);
    for (let i = 0; i < 3; i++) store.set(`old-${i}`, i, 10);
    now = 20;
    store.set('new', 9, 10);
    expect(store.size).toBe(1);
    for (let i = 0; i < 5; i++) store.set(`more-${i}`, i, 10);
    expect(store.size).toBe(3);
    expect(store.get('more-4')).toBe(4);
    expect(store.get('new')).toBeUndefined();
  });
});

describe('parseCookies', () => {
  it('reads name=value pairs, the first of a name winning, and ignores junk', () => {
    expect(parseCookies('a=1; b=two=2;c ; a=3;  d=')).toEqual({ a: '1', b: 'two=2', d: '' });
    expect(parseCookies(undefined)).toEqual({});
  });
});

describe('s256', () => {
  it('is the RFC 7636 example', () => {
    expect(s256('dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk')).toBe('E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM');
  });
});
