import { describe, expect, it } from 'vitest';
import { matchRoute, methodsForPath } from '../../../functions/app/http/route-match.js';
import { ROUTE_KEYS } from '../../../functions/app/http/routes.js';

describe('matching routes the way API Gateway does', () => {
  it.each([
    ['GET', '/api/v2/robots', 'GET /api/v2/robots', {}],
    ['GET', '/api/v2/robots/healthy', 'GET /api/v2/robots/healthy', {}],
    ['GET', '/api/v2/robots/deployable', 'GET /api/v2/robots/deployable', {}],
    ['GET', '/api/v2/robots/xle-XL0001', 'GET /api/v2/robots/{id}', { id: 'xle-XL0001' }],
    ['GET', '/api/v2/robots/xle-XL0001/events', 'GET /api/v2/robots/{id}/events', { id: 'xle-XL0001' }],
    ['POST', '/api/v2/robots/lekiwi-LK0001/fail', 'POST /api/v2/robots/{id}/fail', { id: 'lekiwi-LK0001' }],
    ['post', '/api/v2/robots/lekiwi-LK0001/recover', 'POST /api/v2/robots/{id}/recover', { id: 'lekiwi-LK0001' }],
    ['GET', '/api/v2/robots/lekiwi%20LK', 'GET /api/v2/robots/{id}', { id: 'lekiwi LK' }],
  ])('%s %s → %s', (method, path, routeKey, pathParameters) => {
    expect(matchRoute(ROUTE_KEYS, method, path)).toEqual({ routeKey, pathParameters });
  });

  it.each([
    ['GET', '/api/v2/robots/'],
    ['GET', '/api/v2/robots/a/b'],
    ['GET', '/api/v2'],
    ['POST', '/api/v2/robots'],
    ['DELETE', '/api/v2/robots/lekiwi-LK0001'],
  ])('%s %s matches nothing', (method, path) => {
    expect(matchRoute(ROUTE_KEYS, method, path)).toBeNull();
  });

  it('prefers a static segment to a variable, a variable to a greedy one, and a method to ANY', () => {
    const keys = ['ANY /{proxy+}', 'GET /a/{proxy+}', 'GET /a/{id}', 'GET /a/b', 'ANY /a/b'];
    expect(matchRoute(keys, 'GET', '/a/b')?.routeKey).toBe('GET /a/b');
    expect(matchRoute(keys, 'POST', '/a/b')?.routeKey).toBe('ANY /a/b');
    expect(matchRoute(keys, 'GET', '/a/c')).toEqual({ routeKey: 'GET /a/{id}', pathParameters: { id: 'c' } });
    expect(matchRoute(keys, 'GET', '/a/c/d')).toEqual({ routeKey: 'GET /a/{proxy+}', pathParameters: { proxy: 'c/d' } });
    expect(matchRoute(keys, 'PUT', '/x/y')).toEqual({ routeKey: 'ANY /{proxy+}', pathParameters: { proxy: 'x/y' } });
  });

  it('lists the methods a path takes', () => {
    expect(methodsForPath(ROUTE_KEYS, '/api/v2/robots/lekiwi-LK0001/fail')).toEqual(['POST']);
    expect(methodsForPath(ROUTE_KEYS, '/api/v2/nothing')).toEqual([]);
  });
});
