import { describe, expect, it } from 'vitest';
import { DASHBOARD_CONFIG_PATH, DashboardConfig } from '../../../schemas/index.js';
import { apiBaseOf, checkDashboardConfig, CONFIG_PATH } from '../../../dashboard/src/api/dashboard-config.js';

const good = {
  stage: 'local',
  apiBaseUrl: '/api/v2',
  webSocketUrl: 'ws://localhost:3001/live',
  auth: {
    authorizeUrl: 'http://localhost:3000/oauth2/authorize',
    tokenUrl: 'http://localhost:3000/oauth2/token',
    logoutUrl: 'http://localhost:3000/logout',
    clientId: 'local-dashboard',
    scopes: ['openid'],
  },
};

const samples: Array<[string, unknown]> = [
  ['a good config', good],
  ['an absolute API URL', { ...good, apiBaseUrl: 'https://api.example/api/v2', webSocketUrl: 'wss://ws.example/prod' }],
  ['no stage', { ...good, stage: '' }],
  ['a long stage', { ...good, stage: 'x'.repeat(65) }],
  ['an http WebSocket URL', { ...good, webSocketUrl: 'http://localhost:3001' }],
  ['an unknown setting', { ...good, token: 'eyJ…' }],
  ['no auth', { ...good, auth: undefined }],
  ['a relative token URL', { ...good, auth: { ...good.auth, tokenUrl: '/oauth2/token' } }],
  ['no scopes', { ...good, auth: { ...good.auth, scopes: [] } }],
  ['an empty scope', { ...good, auth: { ...good.auth, scopes: [''] } }],
  ['an unknown auth setting', { ...good, auth: { ...good.auth, clientSecret: 's' } }],
  ['an array', [good]],
  ['null', null],
];

describe("the dashboard's configuration check", () => {
  it.each(samples)('agrees with schemas/dashboard.ts on %s', (_name, value) => {
    const checked = checkDashboardConfig(value);
    expect(checked.ok).toBe(DashboardConfig.safeParse(value).success);
  });

  it('names every bad field', () => {
    const checked = checkDashboardConfig({ ...good, webSocketUrl: 'http://x', extra: 1, auth: { ...good.auth, clientId: '' } });
    expect(checked).toEqual({
      ok: false,
      problems: ['extra: is not a known setting', 'webSocketUrl: must be a ws:// or wss:// URL', 'auth.clientId: must be a non-empty string'],
    });
  });

  it('reads it where schemas/dashboard.ts says it is', () => {
    expect(CONFIG_PATH).toBe(DASHBOARD_CONFIG_PATH);
  });

  it('makes the API base absolute, without a trailing slash', () => {
    expect(apiBaseOf({ apiBaseUrl: '/api/v2' }, 'http://localhost:3000')).toBe('http://localhost:3000/api/v2');
    expect(apiBaseOf({ apiBaseUrl: 'https://api.example/prod/api/v2/' }, 'https://dash.example')).toBe('https://api.example/prod/api/v2');
  });
});
