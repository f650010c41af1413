import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  BatchGetCommand,
  DeleteCommand,
  DynamoDBDocumentClient,
  GetCommand,
  PutCommand,
  QueryCommand,
  TransactWriteCommand,
  UpdateCommand,
  paginateQuery,
  type TransactWriteCommandInput,
} from '@aws-sdk/lib-dynamodb';
import { DeploymentRecordEvent, type RobotUpdateState } from '../../schemas/deployments.js';
import {
  OPEN_ROBOT_STATES,
  type CommitOutcome,
  type DeploymentCommit,
  type DeploymentPage,
  type DeploymentRobot,
  type DeploymentStore,
  type InboxEntry,
  type NewDeployment,
  type PendingEffect,
  type StoredDeployment,
} from '../app/deployments/deployment-store.js';
import { InvalidCursor } from '../app/http/fleet-queries.js';
import type { DeploymentEffect, DeploymentHead } from '../domain/deployment.js';

/**
 * The deployments table (schemas/tables.ts DEPLOYMENTS_TABLE, `pk`/`sk`), one partition per deployment:
 * - head:   pk `deployment#<id>`, sk `head`: the decider's state (`head`, a map) and `revision`;
 * - robot:  pk `deployment#<id>`, sk `robot#<robotId>`: its state, batch, reason, times (small: 10,000 robots fit);
 * - batch:  pk `deployment#<id>`, sk `batch#<00000>`: the batch's robot ids (≤ 1,000), read when the batch opens;
 * - event:  pk `deployment#<id>`, sk `event#<0000000000 seq>`: the record's facts;
 * - effect: pk `deployment#<id>`, sk `effect#<seq>#<i>`: an effect decided and not yet done (deleted once done);
 * - marker: pk `deployment#<id>`, sk `marker#<name>`: a once-only step happened;
 * - inbox:  pk `deployment#<id>`, sk `inbox#<entry id>`: a robot's word not yet folded into the head;
 * - list:   pk `deployments`, sk `<createdAt>#<id>`: GET /deployments newest first without a Scan;
 * - key:    pk `idempotency#<callerId>`, sk `<Idempotency-Key>`: the deployment a POST under that key created.
 *
 * INVARIANTS (app/deployments/deployment-store.ts): a commit is one TransactWriteItems — the head conditioned on its
 * revision, each folded inbox entry on its existence and its robot's item on its state, the marker on its absence —
 * so concurrent orchestrators never lose nor double-count an outcome; an inbox entry is put in one transaction with a
 * check of its robot's item, so a word already counted is never queued again. A new deployment's robots and batches
 * go first (in transactions of at most 100 items, each robot item only over a still-untouched one), the head last: a
 * half-created deployment is invisible and a repeat finishes it.
 */
const partition = (id: string) => `deployment#${id}`;
const LIST_PK = 'deployments';
const HEAD_SK = 'head';
const robotSk = (robotId: string) => `robot#${robotId}`;
const batchSk = (batch: number) => `batch#${String(batch).padStart(5, '0')}`;
const eventSk = (seq: number) => `event#${String(seq).padStart(10, '0')}`;
/** Sorted as decided: by the decision's last seq, then the effect's place in it (padded: a fold has many). */
const effectSk = (seq: number, i: number) => `effect#${String(seq).padStart(10, '0')}#${String(i).padStart(3, '0')}`;
const inboxSk = (id: string) => `inbox#${id}`;
/** DynamoDB's TransactWriteItems limit. */
const TRANSACTION_ITEMS = 100;

export class DynamoDeploymentStore implements DeploymentStore {
  private readonly doc: DynamoDBDocumentClient;
  private readonly tableName: string;

  constructor(options: { client: DynamoDBClient; tableName: string }) {
    this.doc = DynamoDBDocumentClient.from(options.client, { marshallOptions: { removeUndefinedValues: true } });
    this.tableName = options.tableName;
  }

  async create(deployment: NewDeployment): Promise<'created' | 'exists'> {
    const { head } = deployment;
    const pk = partition(head.deploymentId);
    if (await this.headExists(pk)) return 'exists';
    const planned: NonNullable<TransactWriteCommandInput['TransactItems']> = [
      ...deployment.batches.map((robotIds, batch) => ({ Put: { TableName: this.tableName, Item: { pk, sk: batchSk(batch), robotIds: [...robotIds] } } })),
      ...deployment.robots.map((robot) => ({
        Put: {
          TableName: this.tableName,
          Item: { pk, sk: robotSk(robot.robotId), ...robot },
          // Over nothing, or over an untouched item a crashed earlier attempt wrote: never over a robot's progress.
          ConditionExpression: 'attribute_not_exists(pk) OR #state IN (:pending, :held)',
          ExpressionAttributeNames: { '#state': 'state' },
          ExpressionAttributeValues: { ':pending': 'pending', ':held': 'held' },
        },
      })),
    ];
    try {
      for (let i = 0; i < planned.length; i += TRANSACTION_ITEMS) {
        await this.doc.send(new TransactWriteCommand({ TransactItems: planned.slice(i, i + TRANSACTION_ITEMS) }));
      }
    } catch (error) {
      // A robot already moved on: another writer created this deployment and it runs.
      if (isTransactionCanceled(error) && (await this.headExists(pk))) return 'exists';
      throw error;
    }
    const items: NonNullable<TransactWriteCommandInput['TransactItems']> = [
      {
        Put: {
          TableName: this.tableName,
          Item: { pk, sk: HEAD_SK, head, revision: 1 },
          ConditionExpression: 'attribute_not_exists(pk)',
        },
      },
      { Put: { TableName: this.tableName, Item: { pk: LIST_PK, sk: `${head.createdAt}#${head.deploymentId}`, deploymentId: head.deploymentId } } },
      ...this.eventAndEffectPuts(pk, head, deployment.events, deployment.effects),
    ];
    try {
      await this.doc.send(new TransactWriteCommand({ TransactItems: items }));
      return 'created';
    } catch (error) {
      if (isTransactionCanceled(error) && reasonAt(error, 0) === 'ConditionalCheckFailed') return 'exists';
      throw error;
    }
  }

  async read(deploymentId: string): Promise<StoredDeployment | null> {
    const pk = partition(deploymentId);
    const [headItem, effects, inbox] = await Promise.all([
      this.doc.send(new GetCommand({ TableName: this.tableName, Key: { pk, sk: HEAD_SK }, ConsistentRead: true })),
      this.queryAll(pk, 'effect#'),
      this.queryAll(pk, 'inbox#'),
    ]);
    if (!headItem.Item) return null;
    return {
      head: headItem.Item.head as DeploymentHead,
      revision: headItem.Item.revision as number,
      pending: effects.map((item): PendingEffect => ({ id: item.sk as string, effect: item.effect as DeploymentEffect })),
      inbox: inbox.map((item) => item.entry as InboxEntry),
    };
  }

  async readRobot(deploymentId: string, robotId: string): Promise<DeploymentRobot | null> {
    const { Item } = await this.doc.send(
      new GetCommand({ TableName: this.tableName, Key: { pk: partition(deploymentId), sk: robotSk(robotId) }, ConsistentRead: true }),
    );
    return Item ? toRobot(Item) : null;
  }

  async listRobots(deploymentId: string): Promise<DeploymentRobot[]> {
    return (await this.queryAll(partition(deploymentId), 'robot#')).map(toRobot);
  }

  async readBatch(deploymentId: string, batch: number): Promise<string[]> {
    const { Item } = await this.doc.send(
      new GetCommand({ TableName: this.tableName, Key: { pk: partition(deploymentId), sk: batchSk(batch) }, ConsistentRead: true }),
    );
    if (!Item) throw new Error(`${deploymentId} has no batch ${batch}`);
    return Item.robotIds as string[];
  }

  async readEvents(deploymentId: string): Promise<DeploymentRecordEvent[]> {
    return (await this.queryAll(partition(deploymentId), 'event#')).map((item) => DeploymentRecordEvent.parse(item.event));
  }

  async commit(commit: DeploymentCommit): Promise<CommitOutcome> {
    const pk = partition(commit.deploymentId);
    const items: NonNullable<TransactWriteCommandInput['TransactItems']> = [
      {
        Put: {
          TableName: this.tableName,
          Item: { pk, sk: HEAD_SK, head: commit.head, revision: commit.expectedRevision + 1 },
          ConditionExpression: 'revision = :expected',
          ExpressionAttributeValues: { ':expected': commit.expectedRevision },
        },
      },
    ];
    for (const { inboxId, robot } of commit.folded ?? []) {
      items.push({ Delete: { TableName: this.tableName, Key: { pk, sk: inboxSk(inboxId) }, ConditionExpression: 'attribute_exists(pk)' } });
      items.push({ Update: this.robotUpdate(pk, robot.robotId, robot.set, robot.from) });
    }
    if (commit.marker) {
      items.push({ Put: { TableName: this.tableName, Item: { pk, sk: `marker#${commit.marker}` }, ConditionExpression: 'attribute_not_exists(pk)' } });
    }
    items.push(...this.eventAndEffectPuts(pk, commit.head, commit.events, commit.effects));
    if (items.length > TRANSACTION_ITEMS) throw new Error(`a decision of ${items.length} items does not fit one transaction`);
    try {
      await this.doc.send(new TransactWriteCommand({ TransactItems: items }));
      return 'committed';
    } catch (error) {
      if (!isTransactionCanceled(error)) throw error;
      // Item order: head, (inbox entry, robot) per folded entry, marker?, … — an existing marker says "done before".
      const markerIndex = 1 + 2 * (commit.folded?.length ?? 0);
      if (commit.marker && reasonAt(error, markerIndex) === 'ConditionalCheckFailed') return 'marker-exists';
      // The head moved, another commit folded an entry first, or DynamoDB saw two transactions at once: decide again.
      const reasons = error.CancellationReasons ?? [];
      if (reasons.some((r) => r.Code === 'ConditionalCheckFailed' || r.Code === 'TransactionConflict')) return 'conflict';
      throw error;
    }
  }

  async enqueue(deploymentId: string, entry: InboxEntry): Promise<'queued' | 'robot-final' | 'already-queued'> {
    const pk = partition(deploymentId);
    const check = { TableName: this.tableName, Key: { pk, sk: robotSk(entry.robot.robotId) }, ...robotInStates(entry.robot.from) };
    const put = { TableName: this.tableName, Item: { pk, sk: inboxSk(entry.id), entry }, ConditionExpression: 'attribute_not_exists(pk)' };
    for (let attempt = 1; ; attempt += 1) {
      try {
        await this.doc.send(new TransactWriteCommand({ TransactItems: [{ ConditionCheck: check }, { Put: put }] }));
        return 'queued';
      } catch (error) {
        if (!isTransactionCanceled(error)) throw error;
        if (reasonAt(error, 0) === 'ConditionalCheckFailed') return 'robot-final';
        if (reasonAt(error, 1) === 'ConditionalCheckFailed') return 'already-queued';
        // Another transaction on the same items at that moment (a commit folding this robot's other word): again.
        if (attempt < 5 && (error.CancellationReasons ?? []).some((r) => r.Code === 'TransactionConflict')) continue;
        throw error;
      }
    }
  }

  async dropInbox(deploymentId: string, inboxId: string): Promise<void> {
    await this.doc.send(new DeleteCommand({ TableName: this.tableName, Key: { pk: partition(deploymentId), sk: inboxSk(inboxId) } }));
  }

  async progress(deploymentId: string, robotId: string, set: Partial<Omit<DeploymentRobot, 'robotId'>>, from: readonly RobotUpdateState[] = OPEN_ROBOT_STATES): Promise<boolean> {
    try {
      await this.doc.send(new UpdateCommand(this.robotUpdate(partition(deploymentId), robotId, set, from)));
      return true;
    } catch (error) {
      if ((error as Error).name === 'ConditionalCheckFailedException') return false;
      throw error;
    }
  }

  async effectDone(deploymentId: string, effectId: string): Promise<void> {
    await this.doc.send(new DeleteCommand({ TableName: this.tableName, Key: { pk: partition(deploymentId), sk: effectId } }));
  }

  async claimKey(claim: { readonly callerId: string; readonly key: string; readonly fingerprint: string; readonly deploymentId: string }) {
    const Key = { pk: `idempotency#${claim.callerId}`, sk: claim.key };
    try {
      await this.doc.send(
        new PutCommand({
          TableName: this.tableName,
          Item: { ...Key, deploymentId: claim.deploymentId, fingerprint: claim.fingerprint },
          ConditionExpression: 'attribute_not_exists(pk)',
        }),
      );
      return { claimed: true as const };
    } catch (error) {
      if ((error as Error).name !== 'ConditionalCheckFailedException') throw error;
      const { Item } = await this.doc.send(new GetCommand({ TableName: this.tableName, Key, ConsistentRead: true }));
      return { claimed: false as const, deploymentId: Item?.deploymentId as string, fingerprint: Item?.fingerprint as string };
    }
  }

  async list(options: { readonly limit: number; readonly cursor?: string | undefined }): Promise<DeploymentPage> {
    let start: Record<string, unknown> | undefined;
    if (options.cursor !== undefined) {
      const sk = Buffer.from(options.cursor, 'base64url').toString('utf8');
      if (!/^[0-9T:.Z+-]+#dep-[0-9A-Z]{26}$/.test(sk)) throw new InvalidCursor('is not a cursor this list handed out');
      start = { pk: LIST_PK, sk };
    }
    const page = await this.doc.send(
      new QueryCommand({
        TableName: this.tableName,
        KeyConditionExpression: 'pk = :pk',
        ExpressionAttributeValues: { ':pk': LIST_PK },
        ScanIndexForward: false,
        Limit: options.limit,
        ...(start ? { ExclusiveStartKey: start } : {}),
      }),
    );
    const ids = (page.Items ?? []).map((item) => item.deploymentId as string);
    const heads = new Map<string, DeploymentHead>();
    for (let i = 0; i < ids.length; i += 100) {
      let keys: Record<string, unknown>[] | undefined = ids.slice(i, i + 100).map((id) => ({ pk: partition(id), sk: HEAD_SK }));
      for (let attempt = 0; keys && keys.length > 0 && attempt < 8; attempt += 1) {
        const got = await this.doc.send(new BatchGetCommand({ RequestItems: { [this.tableName]: { Keys: keys } } }));
        for (const item of got.Responses?.[this.tableName] ?? []) heads.set((item.head as DeploymentHead).deploymentId, item.head as DeploymentHead);
        keys = got.UnprocessedKeys?.[this.tableName]?.Keys as Record<string, unknown>[] | undefined;
      }
    }
    const last = page.LastEvaluatedKey?.sk as string | undefined;
    return {
      items: ids.flatMap((id) => (heads.has(id) ? [heads.get(id) as DeploymentHead] : [])),
      nextCursor: last && ids.length === options.limit ? Buffer.from(last, 'utf8').toString('base64url') : null,
    };
  }

  // ---- helpers ----

  private async headExists(pk: string): Promise<boolean> {
    const { Item } = await this.doc.send(
      new GetCommand({ TableName: this.tableName, Key: { pk, sk: HEAD_SK }, ConsistentRead: true, ProjectionExpression: 'pk' }),
    );
    return Item !== undefined;
  }

  private eventAndEffectPuts(pk: string, head: DeploymentHead, events: readonly DeploymentRecordEvent[], effects: readonly DeploymentEffect[]) {
    return [
      ...events.map((event) => ({
        Put: { TableName: this.tableName, Item: { pk, sk: eventSk(event.seq), event }, ConditionExpression: 'attribute_not_exists(pk)' },
      })),
      // Keyed by the decision's last seq: unique per decision, so a decision's effects never overwrite another's.
      ...effects.map((effect, i) => ({ Put: { TableName: this.tableName, Item: { pk, sk: effectSk(head.lastSeq, i), effect } } })),
    ];
  }

  private robotUpdate(pk: string, robotId: string, set: Partial<Omit<DeploymentRobot, 'robotId'>>, from: readonly string[]) {
    const condition = robotInStates(from);
    const names: Record<string, string> = { ...condition.ExpressionAttributeNames };
    const values: Record<string, unknown> = { ...condition.ExpressionAttributeValues };
    const assignments = Object.entries(set)
      .filter(([, value]) => value !== undefined)
      .map(([name, value], i) => {
        names[`#f${i}`] = name;
        values[`:v${i}`] = value;
        return `#f${i} = :v${i}`;
      });
    return {
      TableName: this.tableName,
      Key: { pk, sk: robotSk(robotId) },
      UpdateExpression: `SET ${assignments.join(', ')}`,
      ConditionExpression: condition.ConditionExpression,
      ExpressionAttributeNames: names,
      ExpressionAttributeValues: values,
    };
  }


  private async queryAll(pk: string, prefix: string): Promise<Record<string, unknown>[]> {
    const items: Record<string, unknown>[] = [];
    const pages = paginateQuery(
      { client: this.doc },
      {
        TableName: this.tableName,
        KeyConditionExpression: 'pk = :pk AND begins_with(sk, :prefix)',
        ExpressionAttributeValues: { ':pk': pk, ':prefix': prefix },
        ConsistentRead: true,
      },
    );
    for await (const page of pages) items.push(...(page.Items ?? []));
    return items;
  }
}

/** The condition that a robot's item exists and is in one of `from`. */
function robotInStates(from: readonly string[]) {
  return {
    ConditionExpression: `attribute_exists(pk) AND #state IN (${from.map((_, i) => `:from${i}`).join(', ')})`,
    ExpressionAttributeNames: { '#state': 'state' } as Record<string, string>,
    ExpressionAttributeValues: Object.fromEntries(from.map((state, i) => [`:from${i}`, state])) as Record<string, unknown>,
  };
}

function toRobot(item: Record<string, unknown>): DeploymentRobot {
  return {
    robotId: item.robotId as string,
    batch: (item.batch as number | null | undefined) ?? null,
    state: item.state as DeploymentRobot['state'],
    reason: (item.reason as string | null | undefined) ?? null,
    fromVersion: (item.fromVersion as string | null | undefined) ?? null,
    queuedAt: (item.queuedAt as string | null | undefined) ?? null,
    startedAt: (item.startedAt as string | null | undefined) ?? null,
    finishedAt: (item.finishedAt as string | null | undefined) ?? null,
    outcomeSeq: (item.outcomeSeq as number | null | undefined) ?? null,
    rollbackDeploymentId: (item.rollbackDeploymentId as string | null | undefined) ?? null,
    failedAttempts: (item.failedAttempts as string[] | undefined) ?? [],
  };
}

interface TransactionCanceled extends Error {
  readonly CancellationReasons?: readonly { readonly Code?: string | undefined }[] | undefined;
}

function isTransactionCanceled(error: unknown): error is TransactionCanceled {
  return error instanceof Error && error.name === 'TransactionCanceledException';
}

function reasonAt(error: TransactionCanceled, index: number): string | undefined {
  return error.CancellationReasons?.[index]?.Code;
}
