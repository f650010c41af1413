/**
 * The DynamoDB tables' keys, defined once: infra declares the tables from them, the local cloud and the tests create
 * DynamoDB Local's tables from them, and the adapters write items under them.
 */
export interface KeyAttribute {
  readonly name: string;
  /** DynamoDB's scalar types used here: S (string), N (number). */
  readonly type: 'S' | 'N';
}

export interface TableKeys {
  readonly partitionKey: KeyAttribute;
  readonly sortKey: KeyAttribute;
  /** The attribute DynamoDB's TTL reads (epoch seconds), when the table's items expire. */
  readonly timeToLiveAttribute?: string;
}

/**
 * The event log: one partition per robot (`robotId`), its events at `seq` ≥ 1 and its head item at `seq` 0; markers
 * (`<robotId>#event#<eventId>`, `seq` 0) make an eventId unique. Streams NEW_IMAGE to the projector, broadcaster
 * and coalescer.
 */
export const EVENT_LOG_TABLE = {
  partitionKey: { name: 'robotId', type: 'S' },
  sortKey: { name: 'seq', type: 'N' },
} as const satisfies TableKeys;

/**
 * WebSocket connections and their subscriptions (`pk`/`sk`), expiring with API Gateway's 2 h connection limit; each
 * connection's telemetry rate is an attribute of its items (functions/adapters/dynamo-connections.ts), not a key.
 */
export const CONNECTIONS_TABLE = {
  partitionKey: { name: 'pk', type: 'S' },
  sortKey: { name: 'sk', type: 'S' },
  timeToLiveAttribute: 'expiresAt',
} as const satisfies TableKeys;

/**
 * The factory's allow-list (`pk`/`sk`, functions/adapters/dynamo-factory-registry.ts): a serial's record
 * (`serial#<serial>`, `record`), its batch (`batch#<batchId>`, `batch`: model, allowance, claimed) and the batch's
 * members (`batch#<batchId>`, `serial#<serial>`), so a batch lists without a Scan.
 */
export const FACTORY_TABLE = {
  partitionKey: { name: 'pk', type: 'S' },
  sortKey: { name: 'sk', type: 'S' },
} as const satisfies TableKeys;

/**
 * Deployments (issue 12, functions/adapters/dynamo-deployments.ts, `pk`/`sk`): one partition per deployment
 * (`deployment#<id>`: its head, robots, batches, facts, pending effects, markers) and the list (`deployments`,
 * `<createdAt>#<id>`), so GET /deployments reads newest first without a Scan.
 */
export const DEPLOYMENTS_TABLE = {
  partitionKey: { name: 'pk', type: 'S' },
  sortKey: { name: 'sk', type: 'S' },
} as const satisfies TableKeys;

/** The keys in the shape of DynamoDB's CreateTable (`KeySchema`, `AttributeDefinitions`). */
export function createTableKeys(table: TableKeys) {
  return {
    KeySchema: [
      { AttributeName: table.partitionKey.name, KeyType: 'HASH' as const },
      { AttributeName: table.sortKey.name, KeyType: 'RANGE' as const },
    ],
    AttributeDefinitions: [
      { AttributeName: table.partitionKey.name, AttributeType: table.partitionKey.type },
      { AttributeName: table.sortKey.name, AttributeType: table.sortKey.type },
    ],
  };
}
