import { ConditionalCheckFailedException, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  BatchGetCommand,
  DynamoDBDocumentClient,
  GetCommand,
  TransactWriteCommand,
  UpdateCommand,
  paginateQuery,
} from '@aws-sdk/lib-dynamodb';
import { FactoryBatch, FactoryRecord, thingNameOf, type FactoryRefusal } from '../../schemas/index.js';
import type {
  AllowanceOutcome,
  Claim,
  ClaimOutcome,
  FactoryRegistry,
  RegisterOutcome,
  RetireOutcome,
  SerialRegistration,
} from '../app/provisioning/factory-registry.js';

/**
 * The factory table (schemas/tables.ts FACTORY_TABLE, `pk`/`sk`):
 * - record: pk `serial#<serial>`, sk `record`: the serial's FactoryRecord;
 * - batch:  pk `batch#<batchId>`, sk `batch`: model, `registered`, `claimed` and, once the factory fixed it,
 *           `allowance` (absent: the allowance is `registered`);
 * - member: pk `batch#<batchId>`, sk `serial#<serial>`: lists a batch with one Query.
 *
 * INVARIANTS (see app/provisioning/factory-registry.ts): a record, its member item and its batch's `registered` are
 * written in one transaction, so `registered` is the number of members; a first claim writes the record and
 * `claimed + 1` in one transaction conditioned on the record still being `registered` and on
 * `claimed < allowance`, so `claimed` never exceeds the allowance whatever the concurrency.
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

  async claim(claim: Claim): Promise<ClaimOutcome> {
    return claim.kind === 'first' ? this.firstClaim(claim) : this.reimage(claim);
  }

  private async firstClaim(claim: Claim): Promise<ClaimOutcome> {
    const now = claim.at.toISOString();
    try {
      await this.doc.send(
        new TransactWriteCommand({
          TransactItems: [
            {
              Update: {
                TableName: this.tableName,
                Key: recordKey(claim.serial),
                UpdateExpression:
                  'SET #state = :provisioned, certificateId = :certificateId, claimCertificateId = :claimCertificateId, ' +
                  'provisionedAt = :now, updatedAt = :now, claims = claims + :one',
                ConditionExpression: '#state = :registered AND batchId = :batchId AND thingName = :thingName',
                ExpressionAttributeNames: { '#state': 'state' },
                ExpressionAttributeValues: {
                  ':provisioned': 'provisioned',
                  ':registered': 'registered',
                  ':certificateId': claim.certificateId,
                  ':claimCertificateId': claim.claimCertificateId,
                  ':batchId': claim.batchId,
                  ':thingName': claim.thingName,
                  ':now': now,
                  ':one': 1,
                },
              },
            },
            {
              Update: {
                TableName: this.tableName,
                Key: batchKey(claim.batchId),
                UpdateExpression: 'SET updatedAt = :now ADD claimed :one',
                ConditionExpression: `attribute_exists(pk) AND (${ROOM_LEFT})`,
                ExpressionAttributeValues: { ':now': now, ':one': 1 },
              },
            },
          ],
        }),
      );
    } catch (error) {
      const reasons = cancellationCodes(error);
      if (!reasons) throw error;
      if (reasons[0] === 'ConditionalCheckFailed') return { status: 'changed' };
      if (reasons[1] === 'ConditionalCheckFailed') return { status: 'batch-exhausted' };
      // Another claim's transaction held the batch's counter (or the record): nothing written, decide again.
      if (reasons.includes('TransactionConflict')) return { status: 'changed' };
      throw error;
    }
    const record = await this.readSerial(claim.serial);
    if (!record) throw new Error(`Serial ${claim.serial} was claimed but cannot be read`);
    return { status: 'claimed', record };
  }

  private async reimage(claim: Claim): Promise<ClaimOutcome> {
    if (!claim.supersededCertificateId) throw new Error('A re-image names the certificate it supersedes');
    try {
      const { Attributes } = await this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
          Key: recordKey(claim.serial),
          UpdateExpression:
            'SET certificateId = :certificateId, claimCertificateId = :claimCertificateId, provisionedAt = :now, ' +
            'updatedAt = :now, claims = claims + :one, ' +
            'supersededCertificateIds = list_append(if_not_exists(supersededCertificateIds, :empty), :superseded)',
          ConditionExpression: '#state = :provisioned AND certificateId = :current AND thingName = :thingName',
          ExpressionAttributeNames: { '#state': 'state' },
          ExpressionAttributeValues: {
            ':provisioned': 'provisioned',
            ':certificateId': claim.certificateId,
            ':claimCertificateId': claim.claimCertificateId,
            ':current': claim.supersededCertificateId,
            ':superseded': [claim.supersededCertificateId],
            ':thingName': claim.thingName,
            ':empty': [],
            ':now': claim.at.toISOString(),
            ':one': 1,
          },
          ReturnValues: 'ALL_NEW',
        }),
      );
      return { status: 'claimed', record: toRecord(Attributes) };
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return { status: 'changed' };
      throw error;
    }
  }

  async recordRefusal(serial: string, refusal: FactoryRefusal): Promise<void> {
    try {
      await this.doc.send(
        new UpdateCommand({
          TableName: this.tableName,
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
  const { pk: _pk, sk: _sk, allowance, ...batch } = item ?? {};
  return FactoryBatch.parse({
    ...batch,
    allowance: allowance ?? batch.registered,
    allowanceFixed: allowance !== undefined,
  });
}

/** The per-item codes of a cancelled transaction (in TransactItems order), or undefined for any other error. */
function cancellationCodes(error: unknown): (string | undefined)[] | undefined {
  if (!(error instanceof Error) || error.name !== 'TransactionCanceledException') return undefined;
  const reasons = (error as Error & { CancellationReasons?: { Code?: string }[] }).CancellationReasons ?? [];
  return reasons.map((reason) => reason.Code);
}
