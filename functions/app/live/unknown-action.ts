import { CLIENT_ACTIONS, type WebSocketError } from '../../../schemas/index.js';
import { countInvalid, logger } from '../../platform/observability.js';
import type { WebSocketReply } from './subscriptions.js';

/**
 * `$default`: a message whose `action` names no route (or that is not JSON with an `action`). API Gateway alone would
 * answer "Forbidden"; this says which actions exist and what a message looks like.
 */
export function answerUnknownAction(connectionId: string, body: string | null | undefined): WebSocketReply {
  const action = actionOf(body);
  logger.info('WebSocket message with an unknown action', { connectionId, action: action?.slice(0, 64) ?? null });
  countInvalid('WebSocketMessage');
  const known = CLIENT_ACTIONS.map((name) => `"${name}"`).join(' or ');
  const said = action === undefined ? 'This message has no "action"' : `There is no action ${JSON.stringify(action.slice(0, 64))}`;
  const error: WebSocketError = {
    type: 'Error',
    error: {
      code: 'UNKNOWN_ACTION',
      message: `${said}. Send {"action": ${known}, "robotIds": ["*"] or robot ids}.`,
      details: { actions: [...CLIENT_ACTIONS] },
    },
  };
  return { statusCode: 400, body: JSON.stringify(error) };
}

/** The `action` the client sent, if the body is a JSON object with a string `action`. */
function actionOf(body: string | null | undefined): string | undefined {
  if (!body) return undefined;
  try {
    const json: unknown = JSON.parse(body);
    if (json === null || typeof json !== 'object' || Array.isArray(json)) return undefined;
    const action = (json as Record<string, unknown>).action;
    return typeof action === 'string' ? action : undefined;
  } catch {
    return undefined;
  }
}
