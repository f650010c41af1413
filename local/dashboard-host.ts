import { readFile, realpath, stat } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import path from 'node:path';
import { DASHBOARD_CONFIG_PATH, DASHBOARD_ROUTES, DashboardConfig } from '../schemas/index.js';
import { BodyTooLarge, readBody } from './gateway-support.js';
import type { ExtraRouteHandler, PlainResponse } from './http-gateway.js';
import { LocalOAuth, parseCookies, type OAuthRequest, type OAuthResponse } from './oauth-endpoints.js';
import type { LocalJwtIssuer } from './jwt-issuer.js';

/**
 * The dashboard as the local cloud serves it, the way S3 + CloudFront serve it in AWS, on the HTTP gateway's port:
 * - `dashboard/dist` at `/`: hashed `/assets/*` cached for good, `index.html` never cached, and `index.html` for each
 *   client-side route of DASHBOARD_ROUTES (SPA fallback); any other unknown path is a 404; nothing outside the
 *   directory, and no dot-file, is ever served;
 * - `/config.json`: the stage's DashboardConfig for the origin the browser used (localhost or 127.0.0.1), checked
 *   against its schema before it is served;
 * - Cognito's hosted-UI paths (`/oauth2/authorize`, `/oauth2/token`, `/logout`), answered by local/oauth-endpoints.ts;
 * - the response headers CloudFront's policy sets on the page: a Content-Security-Policy allowing only the page's own
 *   origin and the WebSocket API, no framing, nosniff, and no referrer.
 */

export interface LocalDashboardOptions {
  /** The built dashboard (`dashboard/dist`); it may not exist yet (then `/` says how to build it). */
  readonly distDir: string;
  /** The HTTP gateway's origins a browser may use (`http://localhost:3000`, `http://127.0.0.1:3000`); the first is the default. */
  readonly origins: readonly string[];
  /** The WebSocket API's URL (`ws://localhost:3001`). */
  readonly webSocketUrl: string;
  readonly issuer: Pick<LocalJwtIssuer, 'sign' | 'signAccessToken' | 'audience'>;
  readonly stage?: string;
  /** For tests: the OAuth endpoints' clock. */
  readonly now?: () => number;
}

export interface LocalDashboard {
  /** The gateway's exact-path routes: config.json and the OAuth endpoints. */
  readonly routes: Readonly<Record<string, ExtraRouteHandler>>;
  /** Every other path outside the API: the dashboard's files and routes. */
  readonly site: ExtraRouteHandler;
  readonly oauth: LocalOAuth;
}

export const DASHBOARD_SCOPES = ['openid', 'email', 'profile'] as const;
const FORM_LIMIT_BYTES = 64 * 1024;

export function localDashboard(options: LocalDashboardOptions): LocalDashboard {
  const defaultOrigin = options.origins[0];
  if (!defaultOrigin) throw new Error('localDashboard: give at least one origin');
  const oauth = new LocalOAuth({
    issuer: options.issuer,
    clientId: options.issuer.audience,
    callbackUrls: options.origins.map((origin) => `${origin}/`),
    scopes: DASHBOARD_SCOPES,
    ...(options.now ? { now: options.now } : {}),
  });
  const originOf = (request: IncomingMessage) => {
    const claimed = `http://${request.headers.host ?? ''}`;
    return options.origins.includes(claimed) ? claimed : defaultOrigin;
  };
  const configFor = (origin: string): DashboardConfig =>
    DashboardConfig.parse({
      stage: options.stage ?? 'local',
      apiBaseUrl: '/api/v2',
      webSocketUrl: options.webSocketUrl,
      auth: {
        authorizeUrl: `${origin}/oauth2/authorize`,
        tokenUrl: `${origin}/oauth2/token`,
        logoutUrl: `${origin}/logout`,
        clientId: options.issuer.audience,
        scopes: [...DASHBOARD_SCOPES],
      },
    });
  configFor(defaultOrigin); // a configuration that would not validate stops the start, not the first page load

  const oauthRoute =
    (answer: (request: OAuthRequest) => OAuthResponse, withBody = false): ExtraRouteHandler =>
    async (request) => {
      const origin = originOf(request);
      let body: string | undefined;
      try {
        body = withBody ? (await readBody(request, FORM_LIMIT_BYTES)).toString('utf8') : (request.resume(), undefined);
      } catch (error) {
        if (!(error instanceof BodyTooLarge)) throw error;
        return text(413, `The form is over ${FORM_LIMIT_BYTES} bytes.`, { connection: 'close' });
      }
      return toPlain(
        answer({
          url: new URL(request.url ?? '/', origin),
          cookies: parseCookies(request.headers.cookie),
          contentType: request.headers['content-type'],
          body,
        }),
      );
    };

  const securityHeaders = pageSecurityHeaders(options.webSocketUrl);
  return {
    oauth,
    routes: {
      [`GET ${DASHBOARD_CONFIG_PATH}`]: (request) => ({
        statusCode: 200,
        headers: { 'content-type': 'application/json', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' },
        body: JSON.stringify(configFor(originOf(request))),
      }),
      'GET /oauth2/authorize': oauthRoute((request) => oauth.authorize(request)),
      'POST /oauth2/authorize': oauthRoute((request) => oauth.signIn(request), true),
      'POST /oauth2/token': oauthRoute((request) => oauth.token(request), true),
      'GET /logout': oauthRoute((request) => oauth.logout(request)),
    },
    site: (request) => {
      request.resume();
      return serveDashboardFile(options.distDir, request.method ?? 'GET', request.url ?? '/', securityHeaders);
    },
  };
}

/** CloudFront's response headers policy for the page, as infra sets it. */
export function pageSecurityHeaders(webSocketUrl: string): Record<string, string> {
  const webSocketOrigin = new URL(webSocketUrl).origin.replace(/^http/, 'ws');
  const policy = [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    `connect-src 'self' ${webSocketOrigin}`,
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
  ].join('; ');
  return {
    'content-security-policy': policy,
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'x-frame-options': 'DENY',
  };
}

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.webp': 'image/webp',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.woff': 'font/woff',
  '.txt': 'text/plain; charset=utf-8',
  '.wasm': 'application/wasm',
};
const IMMUTABLE = 'public, max-age=31536000, immutable';

/** `/robots/:id` → a regular expression for one path segment per parameter. */
const CLIENT_ROUTES = DASHBOARD_ROUTES.map((route) => new RegExp(`^${route.replace(/:[a-zA-Z]+/g, '[^/]+')}$`));

/**
 * One request for the dashboard's files: GET or HEAD only; the path decoded once, refused (400) when it holds a NUL,
 * a backslash or a `..` segment, and resolved inside `distDir` only.
 */
export async function serveDashboardFile(
  distDir: string,
  method: string,
  target: string,
  securityHeaders: Readonly<Record<string, string>>,
): Promise<PlainResponse> {
  if (method !== 'GET' && method !== 'HEAD') {
    return text(405, `${method} is not supported here: the dashboard's files are read with GET.`, { allow: 'GET, HEAD' });
  }
  let pathname: string;
  try {
    pathname = decodeURIComponent(new URL(target, 'http://local').pathname);
  } catch {
    return text(400, 'The path is not valid percent-encoding.');
  }
  // URL parsing already folds `/a/../b`; what is left after decoding (`%2e%2e`, `%2f`, `\`) is refused outright.
  const segments = pathname.split('/');
  if (pathname.includes('\0') || pathname.includes('\\') || segments.some((segment) => segment === '..')) {
    return text(400, 'The path leaves the dashboard.');
  }
  const page = async () => {
    const index = await readIfFile(distDir, 'index.html');
    if (!index) {
      return text(
        503,
        `The dashboard is not built (no ${path.join(distDir, 'index.html')}). npm start builds it; or run: npx vite build --config dashboard/vite.config.ts`,
      );
    }
    return { statusCode: 200, headers: { 'content-type': CONTENT_TYPES['.html']!, 'cache-control': 'no-store', ...securityHeaders }, body: index };
  };
  if (pathname === '/index.html' || CLIENT_ROUTES.some((route) => route.test(pathname))) return page();
  // Dot-files (the build stamp) and directories are not the site's.
  if (segments.some((segment) => segment.startsWith('.'))) return text(404, 'Not Found');
  const relative = pathname.slice(1);
  const file = relative === '' ? undefined : await readIfFile(distDir, relative);
  if (!file) return text(404, 'Not Found');
  const type = CONTENT_TYPES[path.extname(relative).toLowerCase()] ?? 'application/octet-stream';
  const headers: Record<string, string> = {
    'content-type': type,
    'cache-control': relative.startsWith('assets/') ? IMMUTABLE : 'no-cache',
    'x-content-type-options': 'nosniff',
    ...(type.startsWith('text/html') ? securityHeaders : {}),
  };
  return { statusCode: 200, headers, body: file };
}

/** The file at `relative` under `root`, if it is a regular file inside it (symbolic links followed, and checked too). */
async function readIfFile(root: string, relative: string): Promise<Buffer | undefined> {
  const inside = (base: string, full: string) => full.startsWith(`${base}${path.sep}`);
  try {
    const base = await realpath(root);
    if (!inside(base, path.resolve(base, relative))) return undefined;
    const full = await realpath(path.resolve(base, relative));
    if (!inside(base, full) || !(await stat(full)).isFile()) return undefined;
    return await readFile(full);
  } catch (error) {
    if (['ENOENT', 'ENOTDIR', 'EISDIR'].includes((error as NodeJS.ErrnoException).code ?? '')) return undefined;
    throw error;
  }
}

function text(statusCode: number, message: string, headers: Record<string, string> = {}): PlainResponse {
  return {
    statusCode,
    headers: { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', ...headers },
    body: `${message}\n`,
  };
}

function toPlain(answer: OAuthResponse): PlainResponse {
  return { statusCode: answer.status, headers: answer.headers, body: answer.body, ...(answer.cookies.length > 0 ? { cookies: answer.cookies } : {}) };
}
