import { randomUUID } from 'node:crypto';
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  BatchGetCommand,
  type BatchGetCommandOutput,
  DynamoDBDocumentClient,
  GetCommand,
  QueryCommand,
  ScanCommand,
  TransactWriteCommand,
  type TransactWriteCommandInput,
} from '@aws-sdk/lib-dynamodb';
import type { RecordedEvent, TelemetrySample } from '../../schemas/index.js';
import type { AppendOutcome, AppendRequest, CommandReceipt, EventLog, EventLogReplay, EventPage, RobotHead } from '../app/ports.js';
import {
  HEAD_SEQ,
  markerKey,
  receiptKey,
  fromEventItem,
  fromHeadItem,
  fromReceiptItem,
  toEventItem,
  toHeadItem,
  toMarkerItem,
  toReceiptItem,
} from './event-log-items.js';
import { MAX_PAGE_SIZE, pageOptions, validateAppend } from './event-log-rules.js';

export interface DynamoEventLogOptions {
  readonly client: DynamoDBClient;
  readonly tableName: string;
}

/** BatchGetItem takes at most 100 keys. */
const BATCH_GET_LIMIT = 100;

type TransactItem = NonNullable<TransactWriteCommandInput['TransactItems']>[number];

/**
 * The event log on one DynamoDB table (layout in event-log-items.ts). An append is one transaction: the events at
 * the next sequence numbers, one marker per eventId, and the new head conditioned on the revision the decision was
 * made on. Either all of it is written or nothing is, so two writers can never share a sequence number, and an
 * eventId already in the log makes the whole append a no-op.
 */
export class DynamoEventLog implements EventLog, EventLogReplay {
  private readonly documents: DynamoDBDocumentClient;
  private readonly tableName: string;

  constructor(options: DynamoEventLogOptions) {
    this.documents = DynamoDBDocumentClient.from(options.client, { marshallOptions: { removeUndefinedValues: true } });
    this.tableName = options.tableName;
  }

  async readHead(robotId: string): Promise<RobotHead | null> {
    const { Item } = await this.documents.send(
      new GetCommand({ TableName: this.tableName, Key: { robotId, seq: HEAD_SEQ }, ConsistentRead: true }),
    );
    return Item ? headOf(Item) : null;
  }

  async append(request: AppendRequest): Promise<AppendOutcome> {
    validateAppend(request);
    // A Put replaces the whole head: the sample of the head the decision was made on is carried over.
    const telemetry = request.telemetry ?? request.previousTelemetry;
    const recorded: RecordedEvent[] = request.events.map((event, index) => ({
      seq: request.expectedLastSeq + 1 + index,
      recordedAt: request.recordedAt,
      event,
    }));
    const head: RobotHead = {
      robotId: request.robotId,
      state: request.state,
      lastSeq: recorded.at(-1)?.seq ?? request.expectedLastSeq,
      revision: (request.expectedRevision ?? 0) + 1,
      telemetry,
      outbox: request.outbox ?? null,
      updatedAt: request.recordedAt,
    };
    // Item order matters: CancellationReasons come back in the same order (events, markers, the head, a receipt).
    const items: TransactItem[] = [
      ...recorded.map((entry) => ({
        Put: { TableName: this.tableName, Item: toEventItem(entry), ConditionExpression: 'attribute_not_exists(seq)' },
      })),
      ...recorded.map((entry) => ({
        Put: { TableName: this.tableName, Item: toMarkerItem(entry), ConditionExpression: 'attribute_not_exists(robotId)' },
      })),
      { Put: { TableName: this.tableName, Item: toHeadItem(head, request.telemetry !== undefined, request.telemetryRequestId), ...headCondition(request) } },
      // A receipt already there fails its condition, which reads as a conflict: the caller reads it and answers from it.
      ...(request.receipt
        ? [{ Put: { TableName: this.tableName, Item: toReceiptItem(request.receipt), ConditionExpression: 'attribute_not_exists(robotId)' } }]
        : []),
    ];
    try {
      // The token makes the SDK's own retry of a transaction that did commit (a lost response) a no-op, not a
      // spurious "duplicate".
      await this.documents.send(new TransactWriteCommand({ TransactItems: items, ClientRequestToken: randomUUID() }));
    } catch (error) {
      if (!isTransactionCanceled(error)) throw error;
      return cancelledOutcome(error, recorded);
    }
    return { status: 'appended', head, recorded };
  }

  async hasEvent(robotId: string, eventId: string): Promise<boolean> {
    const { Item } = await this.documents.send(
      new GetCommand({ TableName: this.tableName, Key: markerKey(robotId, eventId), ConsistentRead: true }),
    );
    return Item !== undefined;
  }

  async readReceipt(robotId: string, callerId: string, key: string): Promise<CommandReceipt | null> {
    const { Item } = await this.documents.send(
      new GetCommand({ TableName: this.tableName, Key: receiptKey(robotId, callerId, key), ConsistentRead: true }),
    );
    return Item ? fromReceiptItem(Item) : null;
  }

  /** One BatchGetItem for the head and the first 99 markers, then one per 100 more markers. */
  async readHeadWithKnown(robotId: string, eventIds: readonly string[]): Promise<{ head: RobotHead | null; known: Set<string> }> {
    const unique = [...new Set(eventIds)];
    const headKey = { robotId, seq: HEAD_SEQ };
    const byKey = new Map(unique.map((eventId) => [markerKey(robotId, eventId).robotId, eventId]));
    const known = new Set<string>();
    let head: RobotHead | null = null;
    const keys: Record<string, unknown>[] = [headKey, ...unique.map((eventId) => markerKey(robotId, eventId))];
    for (let start = 0; start < keys.length; start += BATCH_GET_LIMIT) {
      let pending: Record<string, unknown>[] | undefined = keys.slice(start, start + BATCH_GET_LIMIT);
      for (let attempt = 0; pending && pending.length > 0; attempt++) {
        if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, Math.min(1000, 20 * 2 ** attempt)));
        const page: BatchGetCommandOutput = await this.documents.send(
          new BatchGetCommand({ RequestItems: { [this.tableName]: { Keys: pending, ConsistentRead: true } } }),
        );
        for (const item of page.Responses?.[this.tableName] ?? []) {
          if (item.robotId === robotId && item.seq === HEAD_SEQ) head = headOf(item);
          const eventId = byKey.get(String(item.robotId));
          if (eventId !== undefined) known.add(eventId);
        }
        // Throttled keys come back unprocessed: ask again for those only.
        pending = page.UnprocessedKeys?.[this.tableName]?.Keys;
      }
    }
    return { head, known };
  }

  async readEvents(robotId: string, options: { afterSeq?: number; limit?: number } = {}): Promise<EventPage> {
    const { afterSeq, limit } = pageOptions(options);
    const events: RecordedEvent[] = [];
    let startKey: Record<string, unknown> | undefined;
    // One more than asked tells whether another page exists; a Query page can also stop early at 1 MB.
    do {
      const page = await this.documents.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: 'robotId = :robotId AND seq > :afterSeq',
          ExpressionAttributeValues: { ':robotId': robotId, ':afterSeq': afterSeq },
          Limit: limit + 1 - events.length,
          ConsistentRead: true,
          ExclusiveStartKey: startKey,
        }),
      );
      events.push(...(page.Items ?? []).map(fromEventItem));
      startKey = page.LastEvaluatedKey;
    } while (startKey && events.length <= limit);
    const more = events.length > limit;
    const pageEvents = events.slice(0, limit);
    return { events: pageEvents, nextAfterSeq: more ? (pageEvents.at(-1)?.seq ?? null) : null };
  }

  /**
   * Every event of every robot, each robot's in seq order. Heads list the robots (an event is never written without
   * its head, the same transaction writes both), then each robot's events are read by key in order; a Scan of the
   * events themselves would promise no order.
   */
  async *replayAll(): AsyncGenerator<RecordedEvent> {
    for await (const head of this.replayHeads()) {
      let afterSeq: number | null = 0;
      while (afterSeq !== null) {
        const page: EventPage = await this.readEvents(head.robotId, { afterSeq, limit: MAX_PAGE_SIZE });
        yield* page.events;
        afterSeq = page.nextAfterSeq;
      }
    }
  }

  async *replayHeads(): AsyncGenerator<RobotHead> {
    let startKey: Record<string, unknown> | undefined;
    do {
      const page = await this.documents.send(
        new ScanCommand({
          TableName: this.tableName,
          FilterExpression: '#kind = :head',
          ExpressionAttributeNames: { '#kind': 'kind' },
          ExpressionAttributeValues: { ':head': 'head' },
          ConsistentRead: true,
          ExclusiveStartKey: startKey,
        }),
      );
      for (const item of page.Items ?? []) yield headOf(item);
      startKey = page.LastEvaluatedKey;
    } while (startKey);
  }
}

function headOf(item: Record<string, unknown>): RobotHead {
  const { telemetryChanged: _streamOnly, telemetryRequestId: _alsoStreamOnly, ...head } = fromHeadItem(item);
  return head;
}

/** The head must still be the one the decision was made on: same revision, hence same lastSeq; or none at all. */
function headCondition(request: AppendRequest) {
  if (request.expectedRevision === null) return { ConditionExpression: 'attribute_not_exists(robotId)' };
  return {
    ConditionExpression: '#revision = :expectedRevision AND lastSeq = :expectedLastSeq',
    ExpressionAttributeNames: { '#revision': 'revision' },
    ExpressionAttributeValues: { ':expectedRevision': request.expectedRevision, ':expectedLastSeq': request.expectedLastSeq },
  };
}

interface TransactionCanceled extends Error {
  readonly CancellationReasons?: readonly { readonly Code?: string | undefined }[] | undefined;
}

function isTransactionCanceled(error: unknown): error is TransactionCanceled {
  return error instanceof Error && error.name === 'TransactionCanceledException';
}

/**
 * Why DynamoDB refused the transaction. A marker that exists means the command was applied before (even if the head
 * moved on since); a head or event that changed, or another transaction on the same items at the same moment, means
 * a concurrent writer won: read again and decide again. Anything else (throttling inside the transaction, a
 * validation error) is not ours to interpret.
 */
function cancelledOutcome(error: TransactionCanceled, recorded: readonly RecordedEvent[]): AppendOutcome {
  const reasons = error.CancellationReasons ?? [];
  const markerReasons = reasons.slice(recorded.length, 2 * recorded.length);
  const duplicates = recorded.filter((_, index) => markerReasons[index]?.Code === 'ConditionalCheckFailed');
  if (duplicates.length > 0) return { status: 'duplicate', eventIds: duplicates.map((entry) => entry.event.eventId) };
  if (reasons.some((reason) => reason.Code === 'ConditionalCheckFailed' || reason.Code === 'TransactionConflict')) {
    return { status: 'conflict' };
  }
  throw error;
}
