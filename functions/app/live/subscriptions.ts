import {
  ClientMessage,
  MAX_SUBSCRIPTIONS_PER_CONNECTION,
  WILDCARD,
  type SubscriptionAck,
  type TelemetryRate,
  type WebSocketError,
} from '../../../schemas/index.js';
import { countInvalid, logger, metrics, MetricUnit } from '../../platform/observability.js';
import { fieldProblems, type FieldProblem } from '../../platform/validation.js';
import type { ConnectionStore } from './ports.js';

/** The route response API Gateway sends back on the connection. */
export interface WebSocketReply {
  readonly statusCode: number;
  readonly body: string;
}

export type SubscriptionRoute = ClientMessage['action'];

/**
 * A `subscribe` or `unsubscribe` message: `robotIds` is `["*"]` for the whole fleet or a list of robot ids.
 * Subscriptions add up; unsubscribing `*` leaves the robots subscribed by id. A subscribe may set the connection's
 * telemetry rate (`telemetry`: `raw` or coalesced, schemas/api.ts TELEMETRY_RATES); the ack says the rate in effect
 * when the message named one or the connection's is not `raw`. Bad input gets an error reply naming
 * the field, never a thrown error (API Gateway would answer with an opaque "Internal server error").
 */
export async function changeSubscriptions(
  store: ConnectionStore,
  connectionId: string,
  route: SubscriptionRoute,
  body: string | null | undefined,
): Promise<WebSocketReply> {
  const read = readMessage(route, body);
  if (!read.valid) {
    logger.info('Rejected an invalid WebSocket message', { connectionId, route, problems: read.problems });
    countInvalid('WebSocketMessage');
    const fields = [...new Set(read.problems.map((p) => p.field))].join(', ');
    // One problem is said in full (such as the bound on robotIds); several are named, with details in `details`.
    const only = read.problems.length === 1 ? `: ${read.problems[0]!.message}` : '';
    return errorReply(400, 'INVALID_REQUEST', `Invalid ${fields}${only}`, read.problems);
  }
  const robotIds = [...new Set(read.message.robotIds)];
  let telemetry: TelemetryRate | undefined;
  if (read.message.action === 'subscribe') {
    const outcome = await store.subscribe(connectionId, robotIds, read.message.telemetry);
    if (outcome.status === 'unknown-connection') {
      return errorReply(410, 'CONNECTION_UNKNOWN', 'This connection is no longer registered; reconnect.');
    }
    if (outcome.status === 'over-limit') {
      logger.info('Refused a subscribe over the bound', { connectionId, held: outcome.held, adding: outcome.adding });
      metrics.addMetric('SubscribeOverLimit', MetricUnit.Count, 1);
      return errorReply(
        400,
        'TOO_MANY_SUBSCRIPTIONS',
        `A connection watches at most ${MAX_SUBSCRIPTIONS_PER_CONNECTION} robots by id; this one watches ${outcome.held} ` +
          `and this would add ${outcome.adding}, so nothing was subscribed. Subscribe to "${WILDCARD}" for the whole fleet, ` +
          'or unsubscribe some robots first.',
        { limit: MAX_SUBSCRIPTIONS_PER_CONNECTION, held: outcome.held, adding: outcome.adding },
      );
    }
    telemetry = outcome.telemetry;
  } else {
    await store.unsubscribe(connectionId, robotIds);
  }
  logger.debug(`WebSocket ${route}`, { connectionId, robotIds, telemetry });
  metrics.addMetric(route === 'subscribe' ? 'Subscribed' : 'Unsubscribed', MetricUnit.Count, robotIds.length);
  // The rate is said when the client chose one or has one: a client that never does gets the ack it always got.
  const named = read.message.action === 'subscribe' && read.message.telemetry !== undefined;
  const saysRate = telemetry !== undefined && (named || telemetry !== 'raw');
  const ack: SubscriptionAck =
    route === 'subscribe' ? { type: 'Subscribed', robotIds, ...(saysRate ? { telemetry } : {}) } : { type: 'Unsubscribed', robotIds };
  return { statusCode: 200, body: JSON.stringify(ack) };
}

type ReadMessage = { valid: true; message: ClientMessage } | { valid: false; problems: FieldProblem[] };

function readMessage(route: SubscriptionRoute, body: string | null | undefined): ReadMessage {
  if (!body) return { valid: false, problems: [{ field: 'body', message: 'is required' }] };
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return { valid: false, problems: [{ field: 'body', message: 'is not valid JSON' }] };
  }
  const parsed = ClientMessage.safeParse(json);
  if (!parsed.success) return { valid: false, problems: fieldProblems(parsed.error, 'body') };
  // API Gateway routes by `action`, so only a misconfigured route gets here with another one.
  if (parsed.data.action !== route) {
    return { valid: false, problems: [{ field: 'action', message: `must be "${route}" on this route` }] };
  }
  return { valid: true, message: parsed.data };
}

function errorReply(statusCode: number, code: string, message: string, details?: unknown): WebSocketReply {
  const error: WebSocketError = { type: 'Error', error: { code, message, ...(details ? { details } : {}) } };
  return { statusCode, body: JSON.stringify(error) };
}
