import { randomUUID } from 'node:crypto';
import { ConditionalCheckFailedException, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { unmarshall } from '@aws-sdk/util-dynamodb';
import {
  BatchGetCommand,
  DynamoDBDocumentClient,
  GetCommand,
  TransactWriteCommand,
  UpdateCommand,
  paginateQuery,
} from '@aws-sdk/lib-dynamodb';
import { FactoryBatch, FactoryRecord, thingNameOf, type FactoryRefusal, type RobotId, type RobotModel } from '../../schemas/index.js';
import type { RobotHead } from '../app/ports.js';
import type {
  AllowanceOutcome,
  ClaimCertificateOutcome,
  ClaimCommit,
  ClaimCommitOutcome,
  ClaimSnapshot,
  FactoryRegistry,
  ProvisioningClaims,
  RegisterOutcome,
  RetireOutcome,
  SerialRegistration,
} from '../app/provisioning/factory-registry.js';
import { assertNever } from '../../lib/assert-never.js';
import { HEAD_SEQ, fromHeadItem, toEventItem, toHeadItem, toMarkerItem } from './event-log-items.js';

/**
 * The factory table (schemas/tables.ts FACTORY_TABLE, `pk`/`sk`):
 * - record: pk `serial#<serial>`, sk `record`: the serial's FactoryRecord;
 * - batch:  pk `batch#<batchId>`, sk `batch`: model, `registered`, `claimed` and, once the factory fixed it,
 *           `allowance` (absent: the allowance is `registered`);
 * - member: pk `batch#<batchId>`, sk `serial#<serial>`: lists a batch with one Query.
 * The batch item also holds `claimCertificateIds`, a string set: the claim certificates whose claims it admits.
 *
 * INVARIANTS (see app/provisioning/factory-registry.ts): a record, its member item and its batch's `registered` are
 * written in one transaction, so `registered` is the number of members; a first claim writes the record and
 * `claimed + 1` in one transaction conditioned on the record still being `registered` and on
 * `claimed < allowance`, so `claimed` never exceeds the allowance whatever the concurrency (`DynamoProvisioningClaims`).
 */
const recordKey = (serial: string) => ({ pk: `serial#${serial}`, sk: 'record' });
const batchKey = (batchId: string) => ({ pk: `batch#${batchId}`, sk: 'batch' });
const memberKey = (batchId: string, serial: string) => ({ pk: `batch#${batchId}`, sk: `serial#${serial}` });

/** The batch's allowance is fixed, or follows the number of registered serials. */
const ROOM_LEFT =
  '(attribute_exists(allowance) AND claimed < allowance) OR (attribute_not_exists(allowance) AND claimed < registered)';
/** BatchGetItem takes at most 100 keys. */
const BATCH_GET_SIZE = 100;
const MAX_UNPROCESSED_RETRIES = 8;
const MAX_CONFLICT_RETRIES = 10;

export class DynamoFactoryRegistry implements FactoryRegistry {
  private readonly doc: DynamoDBDocumentClient;
  private readonly tableName: string;

  constructor(options: { client: DynamoDBClient; tableName: string }) {
    this.doc = DynamoDBDocumentClient.from(options.client, { marshallOptions: { removeUndefinedValues: true } });
    this.tableName = options.tableName;
  }

  async register({ batchId, model, serial, at }: SerialRegistration): Promise<RegisterOutcome> {
    const now = at.toISOString();
    const record: FactoryRecord = {
      serial,
      model,
      batchId,
      state: 'registered',
      thingName: thingNameOf(model, serial),
      supersededCertificateIds: [],
      claims: 0,
      registeredAt: now,
      updatedAt: now,
    };
    try {
      await this.sendRetryingConflicts(
        new TransactWriteCommand({
          TransactItems: [
            {
              Put: {
                TableName: this.tableName,
                Item: { ...recordKey(serial), ...record },
                ConditionExpression: 'attribute_not_exists(pk)',
              },
            },
            {
              Put: {
                TableName: this.tableName,
                Item: { ...memberKey(batchId, serial), serial },
                ConditionExpression: 'attribute_not_exists(pk)',
              },
            },
            {
              Update: {
                TableName: this.tableName,
                Key: batchKey(batchId),
                UpdateExpression:
                  'SET batchId = :batchId, model = if_not_exists(model, :model), createdAt = if_not_exists(createdAt, :now), ' +
                  'updatedAt = :now, claimed = if_not_exists(claimed, :zero) ADD registered :one',
                ConditionExpression: 'attribute_not_exists(pk) OR model = :model',
                ExpressionAttributeValues: { ':batchId': batchId, ':model': model, ':now': now, ':zero': 0, ':one': 1 },
              },
            },
          ],
        }),
      );
      return { status: 'registered', record };
    } catch (error) {
      const reasons = cancellationCodes(error);
      if (!reasons) throw error;
      if (reasons[0] === 'ConditionalCheckFailed') {
        const existing = await this.readSerial(serial);
        if (!existing) throw new Error(`Serial ${serial} was reported registered but cannot be read`, { cause: error });
        if (existing.batchId === batchId && existing.model === model) return { status: 'unchanged', record: existing };
        return {
          status: 'conflict',
          record: existing,
          problem: `serial ${serial} is already registered in batch ${existing.batchId} as ${existing.model}`,
        };
      }
      if (reasons[2] === 'ConditionalCheckFailed') {
        const batch = await this.readBatch(batchId);
        if (batch) return { status: 'model-conflict', batch };
      }
      throw error;
    }
  }

  /**
   * A registration's transaction collides with any other on its batch's counter (a CLI registering in parallel, a
   * claim): DynamoDB cancels it whole, so it is sent again after a jittered pause.
   */
  private async sendRetryingConflicts(command: TransactWriteCommand): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await this.doc.send(command);
        return;
      } catch (error) {
        const reasons = cancellationCodes(error);
        const conflictOnly = reasons?.includes('TransactionConflict') && !reasons.includes('ConditionalCheckFailed');
        if (!conflictOnly || attempt >= MAX_CONFLICT_RETRIES) throw error;
        await new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(500, 20 * 2 ** attempt)));
      }
    }
  }

  async addClaimCertificate(batchId: string, model: RobotModel, certificateId: string, at: Date): Promise<ClaimCertificateOutcome> {
    const now = at.toISOString();
    try {
      const { Attributes } = await this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: batchKey(batchId),
          UpdateExpression:
            'SET batchId = :batchId, model = if_not_exists(model, :model), createdAt = if_not_exists(createdAt, :now), ' +
            'updatedAt = :now, claimed = if_not_exists(claimed, :zero), registered = if_not_exists(registered, :zero) ' +
            'ADD claimCertificateIds :ids',
          ConditionExpression: '(attribute_not_exists(pk) OR model = :model) AND NOT contains(claimCertificateIds, :id)',
          ExpressionAttributeValues: { ':batchId': batchId, ':model': model, ':now': now, ':zero': 0, ':ids': new Set([certificateId]), ':id': certificateId },
          ReturnValues: 'ALL_NEW',
        }),
      );
      return { status: 'added', batch: toBatch(Attributes) };
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
      const batch = await this.readBatch(batchId);
      if (!batch) throw new Error(`Batch ${batchId} refused the claim certificate but cannot be read`, { cause: error });
      return batch.model === model ? { status: 'unchanged', batch } : { status: 'model-conflict', batch };
    }
  }

  async setAllowance(batchId: string, allowance: number, at: Date): Promise<AllowanceOutcome> {
    try {
      const { Attributes } = await this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: batchKey(batchId),
          UpdateExpression: 'SET allowance = :allowance, updatedAt = :now',
          ConditionExpression: 'attribute_exists(pk) AND claimed <= :allowance',
          ExpressionAttributeValues: { ':allowance': allowance, ':now': at.toISOString() },
          ReturnValues: 'ALL_NEW',
        }),
      );
      return { status: 'set', batch: toBatch(Attributes) };
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
      const batch = await this.readBatch(batchId);
      return batch ? { status: 'below-claimed', batch } : { status: 'unknown-batch' };
    }
  }

  async readSerial(serial: string): Promise<FactoryRecord | undefined> {
    const { Item } = await this.doc.send(
      new GetCommand({ TableName: this.tableName, Key: recordKey(serial), ConsistentRead: true }),
    );
    return Item ? toRecord(Item) : undefined;
  }

  async readBatch(batchId: string): Promise<FactoryBatch | undefined> {
    const { Item } = await this.doc.send(
      new GetCommand({ TableName: this.tableName, Key: batchKey(batchId), ConsistentRead: true }),
    );
    return Item ? toBatch(Item) : undefined;
  }

  async retire(serial: string, at: Date): Promise<RetireOutcome> {
    try {
      const { Attributes } = await this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: recordKey(serial),
          UpdateExpression: 'SET #state = :retired, retiredAt = :now, updatedAt = :now',
          ConditionExpression: 'attribute_exists(pk) AND #state <> :retired',
          ExpressionAttributeNames: { '#state': 'state' },
          ExpressionAttributeValues: { ':retired': 'retired', ':now': at.toISOString() },
          ReturnValues: 'ALL_NEW',
        }),
      );
      return { status: 'retired', record: toRecord(Attributes) };
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
      const record = await this.readSerial(serial);
      return record ? { status: 'already-retired', record } : { status: 'unknown-serial' };
    }
  }

  async *listBatch(batchId: string): AsyncGenerator<FactoryRecord> {
    const pages = paginateQuery(
      { client: this.doc },
      {
        TableName: this.tableName,
        KeyConditionExpression: 'pk = :pk AND begins_with(sk, :member)',
        ExpressionAttributeValues: { ':pk': batchKey(batchId).pk, ':member': 'serial#' },
        ProjectionExpression: 'serial',
        ConsistentRead: true,
      },
    );
    for await (const page of pages) {
      const serials = (page.Items ?? []).map((item) => String(item.serial));
      for (let start = 0; start < serials.length; start += BATCH_GET_SIZE) {
        const chunk = serials.slice(start, start + BATCH_GET_SIZE);
        const records = await this.readMany(chunk);
        for (const serial of chunk) {
          const record = records.get(serial);
          if (record) yield record;
        }
      }
    }
  }

  private async readMany(serials: readonly string[]): Promise<Map<string, FactoryRecord>> {
    const found = new Map<string, FactoryRecord>();
    let keys: Record<string, unknown>[] = serials.map(recordKey);
    for (let attempt = 0; keys.length > 0; attempt++) {
      if (attempt > MAX_UNPROCESSED_RETRIES) throw new Error(`DynamoDB left ${keys.length} factory records unread`);
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 50 * 2 ** attempt));
      const result = await this.doc.send(
        new BatchGetCommand({ RequestItems: { [this.tableName]: { Keys: keys, ConsistentRead: true } } }),
      );
      for (const item of result.Responses?.[this.tableName] ?? []) {
        const record = toRecord(item);
        found.set(record.serial, record);
      }
      keys = (result.UnprocessedKeys?.[this.tableName]?.Keys ?? []) as Record<string, unknown>[];
    }
    return found;
  }
}

function toRecord(item: Record<string, unknown> | undefined): FactoryRecord {
  const { pk: _pk, sk: _sk, ...record } = item ?? {};
  return FactoryRecord.parse(record);
}

function toBatch(item: Record<string, unknown> | undefined): FactoryBatch {
  const { pk: _pk, sk: _sk, allowance, claimCertificateIds, ...batch } = item ?? {};
  return FactoryBatch.parse({
    ...batch,
    allowance: allowance ?? batch.registered,
    allowanceFixed: allowance !== undefined,
    claimCertificateIds: claimCertificateIds instanceof Set ? [...(claimCertificateIds as Set<string>)].sort() : [],
  });
}

/**
 * The pre-provisioning hook's store (app/provisioning/factory-registry.ts `ProvisioningClaims`) on the factory table
 * and the event log's table: one BatchGetItem reads the serial's record and the robot's head; one TransactWriteItems
 * writes the claim, the batch's counter and RobotProvisioned with the new head (event log layout: event-log-items.ts,
 * the same items and conditions DynamoEventLog.append writes). The record and batch items ask for their old image on
 * a failed condition, so the hook names a refusal without reading again.
 */
export class DynamoProvisioningClaims implements ProvisioningClaims {
  private readonly doc: DynamoDBDocumentClient;
  private readonly factoryTable: string;
  private readonly eventLogTable: string;

  constructor(options: { client: DynamoDBClient; factoryTable: string; eventLogTable: string }) {
    this.doc = DynamoDBDocumentClient.from(options.client, { marshallOptions: { removeUndefinedValues: true } });
    this.factoryTable = options.factoryTable;
    this.eventLogTable = options.eventLogTable;
  }

  async readClaimState(serial: string, thingNameGuess: RobotId | undefined): Promise<ClaimSnapshot> {
    const requests: Record<string, { Keys: Record<string, unknown>[]; ConsistentRead: true }> = {
      [this.factoryTable]: { Keys: [recordKey(serial)], ConsistentRead: true },
    };
    if (thingNameGuess) requests[this.eventLogTable] = { Keys: [{ robotId: thingNameGuess, seq: HEAD_SEQ }], ConsistentRead: true };
    let record: FactoryRecord | undefined;
    let head: RobotHead | null = null;
    for (let attempt = 0; Object.keys(requests).length > 0; attempt++) {
      if (attempt > MAX_UNPROCESSED_RETRIES) throw new Error(`DynamoDB left the claim state of serial ${serial} unread`);
      if (attempt > 0) await new Promise((resolve) => setTimeout(resolve, 20 * 2 ** attempt));
      const result = await this.doc.send(new BatchGetCommand({ RequestItems: requests }));
      for (const item of result.Responses?.[this.factoryTable] ?? []) record = toRecord(item);
      for (const item of result.Responses?.[this.eventLogTable] ?? []) head = headOf(item);
      for (const table of Object.keys(requests)) {
        const left = result.UnprocessedKeys?.[table]?.Keys;
        if (left && left.length > 0) requests[table] = { Keys: left as Record<string, unknown>[], ConsistentRead: true };
        else delete requests[table];
      }
    }
    // The robot named itself another model than the factory registered (refused on the record), or did not say.
    if (record && record.thingName !== thingNameGuess) head = await this.readHead(record.thingName);
    return { record, head: record ? head : null };
  }

  async commitClaim(commit: ClaimCommit): Promise<ClaimCommitOutcome> {
    const now = commit.at.toISOString();
    // Item order matters: CancellationReasons come back in it (record, batch, events, markers, head).
    const items: NonNullable<TransactWriteCommand['input']['TransactItems']> = [this.recordItem(commit, now), this.batchItem(commit, now)];
    const append = commit.append;
    const recorded = (append?.events ?? []).map((event, index) => ({ seq: append!.expectedLastSeq + 1 + index, recordedAt: append!.recordedAt, event }));
    if (append) {
      const head: RobotHead = {
        robotId: append.robotId,
        state: append.state,
        lastSeq: recorded.at(-1)?.seq ?? append.expectedLastSeq,
        revision: (append.expectedRevision ?? 0) + 1,
        telemetry: append.previousTelemetry,
        outbox: append.outbox ?? null,
        updatedAt: append.recordedAt,
      };
      items.push(
        ...recorded.map((entry) => ({ Put: { TableName: this.eventLogTable, Item: toEventItem(entry), ConditionExpression: 'attribute_not_exists(seq)' } })),
        ...recorded.map((entry) => ({ Put: { TableName: this.eventLogTable, Item: toMarkerItem(entry), ConditionExpression: 'attribute_not_exists(robotId)' } })),
        { Put: { TableName: this.eventLogTable, Item: toHeadItem(head, false), ...headCondition(append.expectedRevision, append.expectedLastSeq) } },
      );
    }
    try {
      await this.doc.send(new TransactWriteCommand({ TransactItems: items, ClientRequestToken: randomUUID() }));
      return { status: 'committed' };
    } catch (error) {
      if (!(error instanceof Error) || error.name !== 'TransactionCanceledException') throw error;
      const reasons = (error as Error & { CancellationReasons?: { Code?: string; Item?: Record<string, unknown> }[] }).CancellationReasons ?? [];
      const failed = (index: number) => reasons[index]?.Code === 'ConditionalCheckFailed';
      const markers = reasons.slice(2 + recorded.length, 2 + 2 * recorded.length);
      if (failed(0) || failed(1)) {
        const oldRecord = reasons[0]?.Item;
        const oldBatch = reasons[1]?.Item;
        return {
          status: 'condition-failed',
          recordFailed: failed(0),
          batchFailed: failed(1),
          record: oldRecord ? toRecord(unmarshall(oldRecord as never)) : undefined,
          batch: oldBatch ? toBatch(unmarshall(oldBatch as never)) : undefined,
        };
      }
      if (markers.some((reason) => reason?.Code === 'ConditionalCheckFailed')) return { status: 'duplicate' };
      if (reasons.some((reason) => reason.Code === 'ConditionalCheckFailed' || reason.Code === 'TransactionConflict')) {
        return { status: 'changed', conflict: reasons.some((reason) => reason.Code === 'TransactionConflict') };
      }
      throw error;
    }
  }

  async recordRefusal(serial: string, refusal: FactoryRefusal): Promise<void> {
    try {
      await this.doc.send(
        new UpdateCommand({
          TableName: this.factoryTable,
          Key: recordKey(serial),
          UpdateExpression: 'SET lastRefusal = :refusal',
          ConditionExpression: 'attribute_exists(pk)',
          ExpressionAttributeValues: { ':refusal': refusal },
        }),
      );
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
    }
  }

  private async readHead(robotId: string): Promise<RobotHead | null> {
    const { Item } = await this.doc.send(new GetCommand({ TableName: this.eventLogTable, Key: { robotId, seq: HEAD_SEQ }, ConsistentRead: true }));
    return Item ? headOf(Item) : null;
  }

  /** The serial's record: claimed (first), its certificate replaced (re-image), or as it is (repeat). */
  private recordItem(commit: ClaimCommit, now: string) {
    const base = {
      TableName: this.factoryTable,
      Key: recordKey(commit.serial),
      ExpressionAttributeNames: { '#state': 'state' },
      ReturnValuesOnConditionCheckFailure: 'ALL_OLD' as const,
    };
    switch (commit.kind) {
      case 'first':
        return {
          Update: {
            ...base,
            UpdateExpression:
              'SET #state = :provisioned, certificateId = :certificateId, claimCertificateId = :claimCertificateId, ' +
              'provisionedAt = :now, updatedAt = :now, claims = claims + :one',
            ConditionExpression: '#state = :registered AND batchId = :batchId AND thingName = :thingName',
            ExpressionAttributeValues: {
              ':provisioned': 'provisioned',
              ':registered': 'registered',
              ':certificateId': commit.certificateId,
              ':claimCertificateId': commit.claimCertificateId,
              ':batchId': commit.batchId,
              ':thingName': commit.thingName,
              ':now': now,
              ':one': 1,
            },
          },
        };
      case 'reimage':
        if (!commit.supersededCertificateId) throw new Error('A re-image names the certificate it supersedes');
        return {
          Update: {
            ...base,
            UpdateExpression:
              'SET certificateId = :certificateId, claimCertificateId = :claimCertificateId, provisionedAt = :now, ' +
              'updatedAt = :now, claims = claims + :one, ' +
              'supersededCertificateIds = list_append(if_not_exists(supersededCertificateIds, :empty), :superseded)',
            ConditionExpression: '#state = :provisioned AND certificateId = :current AND batchId = :batchId AND thingName = :thingName',
            ExpressionAttributeValues: {
              ':provisioned': 'provisioned',
              ':certificateId': commit.certificateId,
              ':claimCertificateId': commit.claimCertificateId,
              ':current': commit.supersededCertificateId,
              ':superseded': [commit.supersededCertificateId],
              ':batchId': commit.batchId,
              ':thingName': commit.thingName,
              ':empty': [],
              ':now': now,
              ':one': 1,
            },
          },
        };
      case 'repeat':
        return {
          ConditionCheck: {
            ...base,
            ConditionExpression: '#state = :provisioned AND certificateId = :certificateId AND batchId = :batchId',
            ExpressionAttributeValues: { ':provisioned': 'provisioned', ':certificateId': commit.certificateId, ':batchId': commit.batchId },
          },
        };
      default:
        return assertNever(commit.kind);
    }
  }

  /** The batch: lists the claim certificate, and for a first claim has a place left, which the claim takes. */
  private batchItem(commit: ClaimCommit, now: string) {
    const base = { TableName: this.factoryTable, Key: batchKey(commit.batchId), ReturnValuesOnConditionCheckFailure: 'ALL_OLD' as const };
    if (commit.kind === 'first') {
      return {
        Update: {
          ...base,
          UpdateExpression: 'SET updatedAt = :now ADD claimed :one',
          ConditionExpression: `attribute_exists(pk) AND contains(claimCertificateIds, :claim) AND (${ROOM_LEFT})`,
          ExpressionAttributeValues: { ':now': now, ':one': 1, ':claim': commit.claimCertificateId },
        },
      };
    }
    return {
      ConditionCheck: {
        ...base,
        ConditionExpression: 'contains(claimCertificateIds, :claim)',
        ExpressionAttributeValues: { ':claim': commit.claimCertificateId },
      },
    };
  }
}

function headOf(item: Record<string, unknown>): RobotHead {
  const { telemetryChanged: _streamOnly, telemetryRequestId: _alsoStreamOnly, ...head } = fromHeadItem(item);
  return head;
}

/** The event log's rule (dynamo-event-log.ts): the head is still the one the decision was made on, or none at all. */
function headCondition(expectedRevision: number | null, expectedLastSeq: number) {
  if (expectedRevision === null) return { ConditionExpression: 'attribute_not_exists(robotId)' };
  return {
    ConditionExpression: '#revision = :expectedRevision AND lastSeq = :expectedLastSeq',
    ExpressionAttributeNames: { '#revision': 'revision' },
    ExpressionAttributeValues: { ':expectedRevision': expectedRevision, ':expectedLastSeq': expectedLastSeq },
  };
}

/** The per-item codes of a cancelled transaction (in TransactItems order), or undefined for any other error. */
function cancellationCodes(error: unknown): (string | undefined)[] | undefined {
  if (!(error instanceof Error) || error.name !== 'TransactionCanceledException') return undefined;
  const reasons = (error as Error & { CancellationReasons?: { Code?: string }[] }).CancellationReasons ?? [];
  return reasons.map((reason) => reason.Code);
}
