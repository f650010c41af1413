import type {
  CommandResult,
  DeploymentSummaryPage,
  DeploymentView,
  DiscoverResult,
  EventPage,
  EventView,
  FleetMetrics,
  RobotView,
  TelemetryHistory,
} from '../../../schemas/index.js';
import type { ApiClient, ApiFailure } from '../contracts.js';

/**
 * The HTTP API (`/api/v2`) over fetch, with the signed-in user's id token as the bearer. INVARIANTS:
 * - every request asks the session for the token (refreshed when near expiry), never a cached copy;
 * - a non-2xx answer is thrown as an ApiRequestError with the API's `error.code` and `error.message` (or a code
 *   naming what went wrong when the body is not the API's error shape); a 401 also calls `onUnauthorized` (sign in
 *   again) before throwing; a network failure is an ApiRequestError with status 0 and code NETWORK_ERROR;
 * - listing calls follow `nextCursor` to the end (listRobots, eventsAfter) with the largest page (500);
 * - each markFailed / recover / discover / createDeployment / deploymentAction call is one user action and sends one
 *   fresh Idempotency-Key (the API then never applies one action twice, whatever the network does with the request).
 */

export const PAGE_LIMIT = 500;

export class ApiRequestError extends Error implements ApiFailure {
  override readonly name = 'ApiRequestError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
  }
}

export interface FetchInit {
  readonly method: 'GET' | 'POST';
  readonly headers: Record<string, string>;
  readonly body?: string;
  readonly signal?: AbortSignal;
}
export interface FetchAnswer {
  readonly status: number;
  readonly ok: boolean;
  text(): Promise<string>;
}
export type FetchLike = (url: string, init: FetchInit) => Promise<FetchAnswer>;

export interface ApiClientOptions {
  /** Absolute, without a trailing slash: `https://…/api/v2` (api/dashboard-config.ts apiBaseOf). */
  readonly baseUrl: string;
  readonly idToken: () => Promise<string>;
  /** A 401: the token was refused; the page signs in again. */
  readonly onUnauthorized: () => void;
  readonly fetch: FetchLike;
  /** A fresh Idempotency-Key per user action (crypto.randomUUID in the page). */
  readonly newKey: () => string;
}

export function createApiClient(options: ApiClientOptions): ApiClient {
  const { baseUrl } = options;

  async function request<T>(method: 'GET' | 'POST', path: string, extra: { body?: unknown; headers?: Record<string, string>; signal?: AbortSignal | undefined } = {}): Promise<T> {
    const token = await options.idToken();
    const headers: Record<string, string> = { accept: 'application/json', authorization: `Bearer ${token}`, ...extra.headers };
    const init: { -readonly [K in keyof FetchInit]: FetchInit[K] } = { method, headers };
    if (extra.body !== undefined) {
      headers['content-type'] = 'application/json';
      init.body = JSON.stringify(extra.body);
    }
    if (extra.signal) init.signal = extra.signal;
    let answer: FetchAnswer;
    try {
      answer = await options.fetch(`${baseUrl}${path}`, init);
    } catch (error) {
      if (isAbort(error)) throw error;
      throw new ApiRequestError(0, 'NETWORK_ERROR', `The API did not answer ${method} ${path}: ${describe(error)}. Check the network; the page retries.`);
    }
    const text = await answer.text();
    if (!answer.ok) {
      const failure = failureOf(answer.status, text, `${method} ${path}`);
      if (answer.status === 401) options.onUnauthorized();
      throw failure;
    }
    try {
      return (text === '' ? null : JSON.parse(text)) as T;
    } catch {
      throw new ApiRequestError(answer.status, 'INVALID_RESPONSE', `${method} ${path} answered ${answer.status} with a body that is not JSON.`);
    }
  }

  const robotPath = (robotId: string) => `/robots/${encodeURIComponent(robotId)}`;
  const deploymentPath = (deploymentId: string) => `/deployments/${encodeURIComponent(deploymentId)}`;

  async function allPages<T>(path: (cursor: string | null) => string, signal?: AbortSignal): Promise<T[]> {
    const items: T[] = [];
    let cursor: string | null = null;
    do {
      const page: { items: T[]; nextCursor: string | null } = await request('GET', path(cursor), { signal });
      items.push(...page.items);
      cursor = page.nextCursor;
    } while (cursor !== null);
    return items;
  }

  const query = (params: Record<string, string | number | undefined>) => {
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) if (value !== undefined) search.set(key, String(value));
    const text = search.toString();
    return text === '' ? '' : `?${text}`;
  };

  const idempotent = () => ({ 'idempotency-key': options.newKey() });

  return {
    listRobots: (signal) => allPages<RobotView>((cursor) => `/robots${query({ limit: PAGE_LIMIT, cursor: cursor ?? undefined })}`, signal),
    getRobot: (robotId, signal) => request<RobotView>('GET', robotPath(robotId), { signal }),
    listEvents: (robotId, options = {}) =>
      request<EventPage>('GET', `${robotPath(robotId)}/events${query({ limit: options.limit, cursor: options.cursor })}`, { signal: options.signal }),
    // The first page names `after`; the next ones only the cursor (it carries the order; both together are a 400).
    eventsAfter: (robotId, afterSeq, signal) =>
      allPages<EventView>(
        (cursor) =>
          `${robotPath(robotId)}/events${cursor === null ? query({ after: afterSeq, limit: PAGE_LIMIT }) : query({ limit: PAGE_LIMIT, cursor })}`,
        signal,
      ),
    telemetry: (robotId, window, signal) =>
      request<TelemetryHistory>('GET', `${robotPath(robotId)}/telemetry${query({ from: window.from.toISOString(), to: window.to?.toISOString() })}`, { signal }),
    metrics: (signal) => request<FleetMetrics>('GET', '/metrics', { signal }),
    markFailed: (robotId, reason) => request<CommandResult>('POST', `${robotPath(robotId)}/fail`, { body: { reason }, headers: idempotent() }),
    recover: (robotId, note) =>
      request<CommandResult>('POST', `${robotPath(robotId)}/recover`, { body: note === undefined ? {} : { note }, headers: idempotent() }),
    discover: (robotIds) =>
      request<DiscoverResult>('POST', '/discover', { body: robotIds === undefined ? {} : { robotIds: [...robotIds] }, headers: idempotent() }),
    listDeployments: (options = {}) =>
      request<DeploymentSummaryPage>('GET', `/deployments${query({ limit: options.limit, cursor: options.cursor })}`, { signal: options.signal }),
    getDeployment: (deploymentId, signal) => request<DeploymentView>('GET', deploymentPath(deploymentId), { signal }),
    createDeployment: (body) => request<DeploymentView>('POST', '/deployments', { body, headers: idempotent() }),
    deploymentAction: (deploymentId, action, body = {}) =>
      request<DeploymentView>('POST', `${deploymentPath(deploymentId)}/${action}`, { body, headers: idempotent() }),
  };
}

/** The API's `{ error: { code, message, details? } }`, or a failure that says what came instead. */
export function failureOf(status: number, body: string, what: string): ApiRequestError {
  let json: unknown = null;
  try {
    json = JSON.parse(body);
  } catch {
    // not JSON: a proxy's or gateway's page
  }
  const error = typeof json === 'object' && json !== null ? (json as Record<string, unknown>)['error'] : undefined;
  if (typeof error === 'object' && error !== null) {
    const { code, message, details } = error as Record<string, unknown>;
    if (typeof code === 'string' && typeof message === 'string') return new ApiRequestError(status, code, message, details);
  }
  // API Gateway's own answers (its authorizer's 401, a throttled 429, a 503) have `{ "message": … }` or no JSON at all.
  const gatewayMessage = typeof json === 'object' && json !== null ? (json as Record<string, unknown>)['message'] : undefined;
  const code = status === 401 ? 'UNAUTHORIZED' : status === 403 ? 'FORBIDDEN' : status >= 500 ? 'SERVER_ERROR' : `HTTP_${status}`;
  const detail = typeof gatewayMessage === 'string' ? gatewayMessage : body.slice(0, 200) || 'no body';
  return new ApiRequestError(status, code, `${what} failed with ${status}: ${detail}`);
}

function isAbort(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { name?: unknown }).name === 'AbortError';
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
