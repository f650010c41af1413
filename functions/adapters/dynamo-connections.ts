import { ConditionalCheckFailedException, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  BatchWriteCommand,
  DeleteCommand,
  DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  UpdateCommand,
  paginateQuery,
  type BatchWriteCommandInput,
} from '@aws-sdk/lib-dynamodb';
import { CONNECTION_TTL_SECONDS, type ConnectionStore, type NewConnection } from '../app/live/ports.js';

/**
 * The connections table (pk, sk; TTL on `expiresAt`):
 * - connection:   pk `connection#<connectionId>`, sk `connection`; who connected, when, and the set of its
 *                 subscriptions (so removal knows which subscription items to delete without a Scan);
 * - subscription: pk `subscription#<robotId|*>`, sk `<connectionId>`; one per subscribed key, so the broadcaster finds
 *                 a robot's watchers with a Query on `subscription#*` and one on `subscription#<robotId>`.
 * Both expire with the connection, which cleans up after a `$disconnect` that never arrived.
 */
const connectionKey = (connectionId: string) => ({ pk: `connection#${connectionId}`, sk: 'connection' });
const subscriptionKey = (subscription: string, connectionId: string) => ({
  pk: `subscription#${subscription}`,
  sk: connectionId,
});

/** BatchWriteItem takes at most 25 requests. */
const BATCH_SIZE = 25;
const MAX_UNPROCESSED_RETRIES = 5;

type WriteRequest = NonNullable<BatchWriteCommandInput['RequestItems']>[string][number];

export class DynamoConnections implements ConnectionStore {
  private readonly doc: DynamoDBDocumentClient;
  private readonly tableName: string;
  private readonly clock: () => Date;

  constructor(options: { client: DynamoDBClient; tableName: string; clock?: () => Date }) {
    this.doc = DynamoDBDocumentClient.from(options.client);
    this.tableName = options.tableName;
    this.clock = options.clock ?? (() => new Date());
  }

  async add(connection: NewConnection): Promise<void> {
    await this.doc.send(
      new PutCommand({
        TableName: this.tableName,
        Item: {
          ...connectionKey(connection.connectionId),
          userId: connection.userId,
          roles: [...connection.roles],
          connectedAt: connection.connectedAt.toISOString(),
          expiresAt: Math.floor(connection.connectedAt.getTime() / 1000) + CONNECTION_TTL_SECONDS,
        },
      }),
    );
  }

  async subscribe(connectionId: string, subscriptions: readonly string[]): Promise<boolean> {
    let expiresAt: number;
    try {
      // The set first, then the items: a crash in between leaves a listed subscription that removal still deletes.
      const updated = await this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: connectionKey(connectionId),
          UpdateExpression: 'ADD subscriptions :subscriptions',
          ConditionExpression: 'attribute_exists(pk)',
          ExpressionAttributeValues: { ':subscriptions': new Set(subscriptions) },
          ReturnValues: 'ALL_NEW',
        }),
      );
      expiresAt = Number(updated.Attributes?.expiresAt);
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw error;
    }
    await this.batchWrite(
      subscriptions.map((subscription) => ({
        PutRequest: { Item: { ...subscriptionKey(subscription, connectionId), expiresAt } },
      })),
    );
    return true;
  }

  async unsubscribe(connectionId: string, subscriptions: readonly string[]): Promise<void> {
    // The items first, so deliveries stop even if the set update fails; removal tolerates a listed missing item.
    await this.batchWrite(
      subscriptions.map((subscription) => ({ DeleteRequest: { Key: subscriptionKey(subscription, connectionId) } })),
    );
    try {
      await this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: connectionKey(connectionId),
          UpdateExpression: 'DELETE subscriptions :subscriptions',
          ConditionExpression: 'attribute_exists(pk)',
          ExpressionAttributeValues: { ':subscriptions': new Set(subscriptions) },
        }),
      );
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
    }
  }

  async remove(connectionId: string, alsoSubscribedTo: readonly string[] = []): Promise<void> {
    const found = await this.doc.send(
      new GetCommand({ TableName: this.tableName, Key: connectionKey(connectionId), ConsistentRead: true }),
    );
    const listed = found.Item?.subscriptions instanceof Set ? [...(found.Item.subscriptions as Set<string>)] : [];
    const subscriptions = [...new Set([...listed, ...alsoSubscribedTo])];
    // Subscriptions before the connection: if this stops halfway, the connection still lists what is left to delete.
    await this.batchWrite(
      subscriptions.map((subscription) => ({ DeleteRequest: { Key: subscriptionKey(subscription, connectionId) } })),
    );
    await this.doc.send(new DeleteCommand({ TableName: this.tableName, Key: connectionKey(connectionId) }));
  }

  async subscribersOf(subscription: string): Promise<string[]> {
    const connectionIds: string[] = [];
    const pages = paginateQuery(
      { client: this.doc },
      {
        TableName: this.tableName,
        KeyConditionExpression: 'pk = :pk',
        // TTL deletes within days, not at once: an expired subscription is already gone for us.
        FilterExpression: 'expiresAt > :now',
        ExpressionAttributeValues: {
          ':pk': subscriptionKey(subscription, '').pk,
          ':now': Math.floor(this.clock().getTime() / 1000),
        },
        ProjectionExpression: 'sk',
      },
    );
    for await (const page of pages) {
      for (const item of page.Items ?? []) connectionIds.push(String(item.sk));
    }
    return connectionIds;
  }

  /** Writes in chunks of 25, resending what DynamoDB left unprocessed (throttling) a few times before giving up. */
  private async batchWrite(requests: WriteRequest[]): Promise<void> {
    for (let start = 0; start < requests.length; start += BATCH_SIZE) {
      let pending: WriteRequest[] = requests.slice(start, start + BATCH_SIZE);
      for (let attempt = 0; pending.length > 0; attempt++) {
        if (attempt > MAX_UNPROCESSED_RETRIES) {
          throw new Error(`DynamoDB left ${pending.length} connection table writes unprocessed; retry later`);
        }
        if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 50 * 2 ** attempt));
        const result = await this.doc.send(new BatchWriteCommand({ RequestItems: { [this.tableName]: pending } }));
        pending = result.UnprocessedItems?.[this.tableName] ?? [];
      }
    }
  }
}
