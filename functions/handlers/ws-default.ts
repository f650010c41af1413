import type { APIGatewayProxyWebsocketEventV2 } from 'aws-lambda';
import { answerUnknownAction } from '../app/live/unknown-action.js';
import { lambdaHandler } from '../platform/lambda.js';

/** The `$default` route: any message whose `action` is not a route; its route response lists the actions that are. */
export const handler = lambdaHandler(async (event: APIGatewayProxyWebsocketEventV2) =>
  answerUnknownAction(event.requestContext.connectionId, event.body),
);
