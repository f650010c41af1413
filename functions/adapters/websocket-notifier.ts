import {
  GoneException,
  PostToConnectionCommand,
  type ApiGatewayManagementApiClient,
} from '@aws-sdk/client-apigatewaymanagementapi';
import type { LiveNotifier, LivePush } from '../app/live/ports.js';

/** Pushes JSON messages through API Gateway's `@connections` management API. */
export class ApiGatewayNotifier implements LiveNotifier {
  constructor(private readonly client: ApiGatewayManagementApiClient) {}

  async send(connectionId: string, message: LivePush): Promise<'sent' | 'gone'> {
    try {
      await this.client.send(
        new PostToConnectionCommand({ ConnectionId: connectionId, Data: new TextEncoder().encode(JSON.stringify(message)) }),
      );
      return 'sent';
    } catch (error) {
      if (isGone(error)) return 'gone';
      throw error;
    }
  }
}

/** A 410: the client went away without a `$disconnect` we saw, or the connection hit its 2-hour limit. */
function isGone(error: unknown): boolean {
  if (error instanceof GoneException) return true;
  const status = (error as { $metadata?: { httpStatusCode?: number } } | null)?.$metadata?.httpStatusCode;
  return status === 410;
}
