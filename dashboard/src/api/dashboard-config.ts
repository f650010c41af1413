import type { DashboardConfig } from '../contracts.js';

/**
 * `/config.json`, checked by hand against schemas/dashboard.ts's DashboardConfig (zod stays out of the bundle; a unit
 * test holds the two to the same answers). Every problem is named with its field, so a broken deployment says what to fix.
 */

/** schemas/dashboard.ts DASHBOARD_CONFIG_PATH (a test checks they agree). */
export const CONFIG_PATH = '/config.json';

export type ConfigCheck = { readonly ok: true; readonly config: DashboardConfig } | { readonly ok: false; readonly problems: readonly string[] };

const TOP_KEYS = ['stage', 'apiBaseUrl', 'webSocketUrl', 'auth'] as const;
const AUTH_KEYS = ['authorizeUrl', 'tokenUrl', 'logoutUrl', 'clientId', 'scopes'] as const;

export function checkDashboardConfig(value: unknown): ConfigCheck {
  const problems: string[] = [];
  if (!isRecord(value)) return { ok: false, problems: ['the file is not a JSON object'] };
  unknownKeys(value, TOP_KEYS, '', problems);
  const stage = value['stage'];
  if (typeof stage !== 'string' || stage.length < 1 || stage.length > 64) problems.push('stage: must be a string of 1 to 64 characters');
  if (typeof value['apiBaseUrl'] !== 'string' || value['apiBaseUrl'].length < 1) problems.push('apiBaseUrl: must be a non-empty string');
  const webSocketUrl = value['webSocketUrl'];
  if (typeof webSocketUrl !== 'string' || !/^wss?:\/\//.test(webSocketUrl)) problems.push('webSocketUrl: must be a ws:// or wss:// URL');
  const auth = value['auth'];
  if (!isRecord(auth)) {
    problems.push('auth: must be an object with authorizeUrl, tokenUrl, logoutUrl, clientId, scopes');
  } else {
    unknownKeys(auth, AUTH_KEYS, 'auth.', problems);
    for (const key of ['authorizeUrl', 'tokenUrl', 'logoutUrl'] as const) {
      if (!isUrl(auth[key])) problems.push(`auth.${key}: must be an absolute URL`);
    }
    if (typeof auth['clientId'] !== 'string' || auth['clientId'].length < 1) problems.push('auth.clientId: must be a non-empty string');
    const scopes = auth['scopes'];
    if (!Array.isArray(scopes) || scopes.length < 1 || !scopes.every((scope) => typeof scope === 'string' && scope.length > 0)) {
      problems.push('auth.scopes: must be a non-empty list of non-empty strings');
    }
  }
  return problems.length > 0 ? { ok: false, problems } : { ok: true, config: value as unknown as DashboardConfig };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isUrl(value: unknown): boolean {
  if (typeof value !== 'string') return false;
  try {
    new URL(value);
    return true;
  } catch {
    return false;
  }
}

function unknownKeys(record: Record<string, unknown>, known: readonly string[], prefix: string, problems: string[]): void {
  for (const key of Object.keys(record)) if (!known.includes(key)) problems.push(`${prefix}${key}: is not a known setting`);
}

/** `apiBaseUrl` made absolute against the page (it may be a path such as `/api/v2`), without a trailing slash. */
export function apiBaseOf(config: Pick<DashboardConfig, 'apiBaseUrl'>, pageOrigin: string): string {
  return new URL(config.apiBaseUrl, `${pageOrigin}/`).toString().replace(/\/+$/, '');
}
