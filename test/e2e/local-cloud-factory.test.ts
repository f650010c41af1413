import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { DescribeTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoFactoryRegistry } from '../../functions/adapters/dynamo-factory-registry.js';
import { LOCAL_AWS } from '../../local/dynamodb-local.js';
import { createTableKeys, FACTORY_TABLE } from '../../schemas/tables.js';
import { freePorts, freshStateDir, removeStateDir, ROOT, startCloudProcess, type CloudProcess } from '../support/local-cloud-process.js';

/**
 * The local cloud holds the factory's allow-list like the stateful stack does (issue 11): the table exists from the
 * start, endpoints.json names it, and `npm run factory` finds it there with no flags.
 */
const run = promisify(execFile);
let stateDir: string;
let cloud: CloudProcess;
let dynamo: DynamoDBClient;

beforeAll(async () => {
  stateDir = await freshStateDir();
  cloud = await startCloudProcess({ stateDir, ports: await freePorts() });
  dynamo = new DynamoDBClient({ ...LOCAL_AWS, endpoint: cloud.endpoints.dynamodbEndpoint });
});

afterAll(async () => {
  dynamo?.destroy();
  await cloud?.stop();
  if (stateDir) await removeStateDir(stateDir);
});

describe('the local factory table', () => {
  it('is created at start with the keys of FACTORY_TABLE and named in endpoints.json', async () => {
    expect(cloud.endpoints.factoryTable).toBe('heartbeat-factory');
    const { Table } = await dynamo.send(new DescribeTableCommand({ TableName: cloud.endpoints.factoryTable }));
    const keys = createTableKeys(FACTORY_TABLE);
    expect(Table?.KeySchema).toEqual(keys.KeySchema);
    expect(Table?.AttributeDefinitions).toEqual(keys.AttributeDefinitions);
  });

  it('is where `npm run factory -- register` writes when the local cloud runs', async () => {
    const { stdout } = await run(
      process.execPath,
      ['--import', 'tsx', 'scripts/factory.ts', 'register', '--batch', 'LOCAL-1', '--model', 'lekiwi', '--serials', 'LC0001'],
      { cwd: ROOT, env: { ...process.env, LOCAL_STATE_DIR: stateDir } },
    );
    expect(stdout).toContain('1 registered');
    const registry = new DynamoFactoryRegistry({ client: dynamo, tableName: cloud.endpoints.factoryTable });
    expect(await registry.readSerial('LC0001')).toMatchObject({ batchId: 'LOCAL-1', thingName: 'lekiwi-LC0001', state: 'registered' });
  });
});
