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
import { DEFAULT_TELEMETRY_RATE, MAX_SUBSCRIPTIONS_PER_CONNECTION, TelemetryRate, WILDCARD } from '../../schemas/index.js';
import {
  CONNECTION_TTL_SECONDS,
  type ConnectionStore,
  type NewConnection,
  type SubscribeOutcome,
  type Watcher,
} from '../app/live/ports.js';

/**
 * The connections table (pk, sk; TTL on `expiresAt`):
 * - connection:   pk `connection#<connectionId>`, sk `connection`; who connected, when, the set of its
 *                 subscriptions (so removal knows which subscription items to delete without a Scan) and its
 *                 telemetry rate `telemetry` (absent when `raw`, so a connection that never asks for a rate
 *                 has the items it always had);
 * - subscription: pk `subscription#<robotId|*>`, sk `<connectionId>`; one per subscribed key, so the broadcaster finds
 *                 a robot's watchers with a Query on `subscription#*` and one on `subscription#<robotId>`. Each
 *                 carries a copy of the connection's `telemetry` (absent when `raw`), so those Queries also say who wants
 *                 raw samples and who coalesced views, with no read of the connections.
 * A subscribe that changes the rate rewrites every subscription item of the connection (at most
 * MAX_SUBSCRIPTIONS_PER_CONNECTION + 1) with the new one.
 * Both expire with the connection, which cleans up after a `$disconnect` that never arrived.
 *
 * INVARIANT: a connection lists at most MAX_SUBSCRIPTIONS_PER_CONNECTION robot ids (plus `*`), so removing it is a
 * few BatchWriteItem calls whatever the client sent.
 */
const connectionKey = (connectionId: string) => ({ pk: `connection#${connectionId}`, sk: 'connection' });
const subscriptionKey = (subscription: string, connectionId: string) => ({
  pk: `subscription#${subscription}`,
  sk: connectionId,
});

/** BatchWriteItem takes at most 25 requests. */
const BATCH_SIZE = 25;
const MAX_UNPROCESSED_RETRIES = 5;
/** Reads of a connection whose subscriptions changed under a subscribe, before giving up. */
const MAX_SUBSCRIBE_ATTEMPTS = 5;

/** Robot ids among subscriptions: `*` is the whole fleet and does not count towards the bound. */
const robotCount = (subscriptions: Iterable<string>) => [...subscriptions].filter((key) => key !== WILDCARD).length;

/** The attribute a rate is stored as: none for `raw` (the default). */
const rateAttribute = (rate: TelemetryRate) => (rate === DEFAULT_TELEMETRY_RATE ? {} : { telemetry: rate });

/** A stored rate; absent (written before rates existed) or unknown reads as the default, `raw`. */
function rateOf(value: unknown): TelemetryRate {
  const parsed = TelemetryRate.safeParse(value);
  return parsed.success ? parsed.data : DEFAULT_TELEMETRY_RATE;
}

type WriteRequest = NonNullable<BatchWriteCommandInput['RequestItems']>[string][number];

export class DynamoConnections implements ConnectionStore {
  private readonly doc: DynamoDBDocumentClient;
  private readonly tableName: string;
  private readonly clock: () => Date;
  private readonly maxSubscriptions: number;

  constructor(options: { client: DynamoDBClient; tableName: string; clock?: () => Date; maxSubscriptions?: number }) {
    this.doc = DynamoDBDocumentClient.from(options.client);
    this.tableName = options.tableName;
    this.clock = options.clock ?? (() => new Date());
    this.maxSubscriptions = options.maxSubscriptions ?? MAX_SUBSCRIPTIONS_PER_CONNECTION;
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

  /**
   * Read, check the bound, then add only what is new under a condition that the set has not grown past the room left
   * (so a racing subscribe of the same connection can never take it over the bound: the loser reads again).
   */
  async subscribe(connectionId: string, subscriptions: readonly string[], telemetry?: TelemetryRate): Promise<SubscribeOutcome> {
    for (let attempt = 1; ; attempt++) {
      const found = await this.doc.send(
        new GetCommand({ TableName: this.tableName, Key: connectionKey(connectionId), ConsistentRead: true }),
      );
      if (!found.Item) return { status: 'unknown-connection' };
      const held = found.Item.subscriptions instanceof Set ? (found.Item.subscriptions as Set<string>) : new Set<string>();
      const heldRate = rateOf(found.Item.telemetry);
      const rate = telemetry ?? heldRate;
      const rateChanged = rate !== heldRate;
      const added = subscriptions.filter((subscription) => !held.has(subscription));
      const heldRobots = robotCount(held);
      const addedRobots = robotCount(added);
      if (heldRobots + addedRobots > this.maxSubscriptions) return { status: 'over-limit', held: heldRobots, adding: addedRobots };
      const expiresAt = Number(found.Item.expiresAt);
      if (added.length > 0 || rateChanged) {
        try {
          // The set first, then the items: a crash in between leaves a listed subscription that removal still deletes.
          await this.doc.send(new UpdateCommand(this.addSubscriptions(connectionId, added, addedRobots, { rate, heldRate })));
        } catch (error) {
          if (!(error instanceof ConditionalCheckFailedException)) throw error;
          // Gone, or another subscribe of this connection got in first: read again.
          if (attempt >= MAX_SUBSCRIBE_ATTEMPTS) {
            throw new Error(`Connection ${connectionId}: its subscriptions kept changing during ${MAX_SUBSCRIBE_ATTEMPTS} attempts`);
          }
          continue;
        }
      }
      // Every requested item, not only the new ones: a listed subscription whose item a crash left unwritten is mended.
      // A new rate goes to every subscription the connection holds.
      const written = rateChanged ? [...new Set([...held, ...subscriptions])] : subscriptions;
      await this.batchWrite(
        written.map((subscription) => ({
          PutRequest: { Item: { ...subscriptionKey(subscription, connectionId), expiresAt, ...rateAttribute(rate) } },
        })),
      );
      return { status: 'subscribed', telemetry: rate };
    }
  }

  /**
   * ADD `added` to the set and SET the rate, if the connection exists, still has room for `addedRobots` more robot ids
   * and still has the rate it was read with (a racing subscribe that changed it makes this one read again).
   */
  private addSubscriptions(
    connectionId: string,
    added: readonly string[],
    addedRobots: number,
    { rate, heldRate }: { rate: TelemetryRate; heldRate: TelemetryRate },
  ) {
    const room = this.maxSubscriptions - addedRobots;
    const bounded = addedRobots > 0;
    const sameRate = '(attribute_not_exists(#rate) OR #rate = :heldRate)';
    return {
      TableName: this.tableName,
      Key: connectionKey(connectionId),
      // `raw` is the absence of the attribute, so a connection that never asks for a rate keeps today's items.
      UpdateExpression: [rate === DEFAULT_TELEMETRY_RATE ? 'REMOVE #rate' : 'SET #rate = :rate', ...(added.length > 0 ? ['ADD subscriptions :added'] : [])].join(' '),
      ConditionExpression: bounded
        ? `attribute_exists(pk) AND ${sameRate} AND (attribute_not_exists(subscriptions) OR size(subscriptions) <= :room OR (contains(subscriptions, :wildcard) AND size(subscriptions) <= :roomWithWildcard))`
        : `attribute_exists(pk) AND ${sameRate}`,
      ExpressionAttributeNames: { '#rate': 'telemetry' },
      ExpressionAttributeValues: {
        ...(rate === DEFAULT_TELEMETRY_RATE ? {} : { ':rate': rate }),
        ':heldRate': heldRate,
        ...(added.length > 0 ? { ':added': new Set(added) } : {}),
        ...(bounded ? { ':room': room, ':roomWithWildcard': room + 1, ':wildcard': WILDCARD } : {}),
      },
    };
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
    return (await this.watchersOf(subscription)).map((watcher) => watcher.connectionId);
  }

  async watchersOf(subscription: string): Promise<Watcher[]> {
    const watchers: Watcher[] = [];
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
        ProjectionExpression: 'sk, #rate',
        ExpressionAttributeNames: { '#rate': 'telemetry' },
      },
    );
    for await (const page of pages) {
      for (const item of page.Items ?? []) watchers.push({ connectionId: String(item.sk), telemetry: rateOf(item.telemetry) });
    }
    return watchers;
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
