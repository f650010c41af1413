import type { Context } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { DynamoEventLog } from '../../functions/adapters/dynamo-event-log.js';
import { DynamoFactoryRegistry } from '../../functions/adapters/dynamo-factory-registry.js';
import { executeRobotCommand } from '../../functions/app/execute-robot-command.js';
import { registerSerials } from '../../functions/app/provisioning/register-serials.js';
import { lambdaContext } from '../../local/lambda-context.js';
import { PreProvisioningHookResponse } from '../../schemas/index.js';
import { createTestEventLog } from '../support/dynamo.js';
import { createTestFactoryTable, hookInput } from '../support/factory.js';
import { connectedEvent } from '../support/lifecycle-events.js';

/** The Lambda entry as IoT invokes it: the documented input in, the documented output out, DynamoDB Local behind. */
type Hook = (event: unknown, context: Context) => Promise<unknown>;
let handler: Hook;
let factory: Awaited<ReturnType<typeof createTestFactoryTable>>;
let eventLog: Awaited<ReturnType<typeof createTestEventLog>>;
let registry: DynamoFactoryRegistry;
const invoke = async (event: unknown) => PreProvisioningHookResponse.parse(await handler(event, lambdaContext('PreProvisioningHook')));

beforeAll(async () => {
  factory = await createTestFactoryTable();
  eventLog = await createTestEventLog();
  registry = new DynamoFactoryRegistry({ client: factory.client, tableName: factory.tableName });
  Object.assign(process.env, {
    FACTORY_TABLE: factory.tableName,
    EVENT_LOG_TABLE: eventLog.tableName,
    AWS_ENDPOINT_URL_DYNAMODB: inject('dynamoEndpoint'),
  });
  handler = (await import('../../functions/handlers/pre-provisioning-hook.js')).handler as unknown as Hook;
  await registerSerials(registry, { batchId: 'LINE-7', model: 'lekiwi', serials: ['10000000a1b2c3d4', 'HK0002'], allowance: 1, claimCertificateIds: ['claim-cert-batch-a'], now: () => new Date() });
});

afterAll(async () => {
  await factory.drop();
  await eventLog.drop();
});

describe('PreProvisioningHook handler', () => {
  it('admits a registered serial with the thing name as a parameter override, and records the claim', async () => {
    const response = await invoke(hookInput({ SerialNumber: '10000000a1b2c3d4', Model: 'lekiwi' }, 'cert-aaa'));

    expect(response).toEqual({
      allowProvisioning: true,
      parameterOverrides: { ThingName: 'lekiwi-10000000a1b2c3d4', Model: 'lekiwi', Batch: 'LINE-7' },
    });
    expect(await registry.readSerial('10000000a1b2c3d4')).toMatchObject({
      state: 'provisioned',
      certificateId: 'cert-aaa',
      claimCertificateId: 'claim-cert-batch-a',
    });
  });

  it('answers allowProvisioning false, and nothing else, for a serial the factory never registered', async () => {
    expect(await invoke(hookInput({ SerialNumber: 'STRANGER' }))).toEqual({ allowProvisioning: false });
  });

  it('refuses the batch claim beyond its count, keeping the reason on the serial', async () => {
    expect(await invoke(hookInput({ SerialNumber: 'HK0002' }, 'cert-bbb'))).toEqual({ allowProvisioning: false });
    expect(await registry.readSerial('HK0002')).toMatchObject({
      state: 'registered',
      lastRefusal: { reason: 'HOOK_DENIED_BATCH_EXHAUSTED', certificateId: 'cert-bbb' },
    });
  });

  it('admits the re-imaged robot (offline holder) under the same thing name', async () => {
    const response = await invoke(hookInput({ SerialNumber: '10000000a1b2c3d4' }, 'cert-after-reflash'));

    expect(response).toMatchObject({ allowProvisioning: true, parameterOverrides: { ThingName: 'lekiwi-10000000a1b2c3d4' } });
    expect(await registry.readSerial('10000000a1b2c3d4')).toMatchObject({
      certificateId: 'cert-after-reflash',
      supersededCertificateIds: ['cert-aaa'],
    });
  });

  it('refuses a new certificate for the serial while its robot is online in the event log', async () => {
    await registerSerials(registry, { batchId: 'LINE-8', model: 'lekiwi', serials: ['ON0001'], claimCertificateIds: ['claim-cert-batch-a'], now: () => new Date() });
    expect(await invoke(hookInput({ SerialNumber: 'ON0001' }, 'cert-live'))).toMatchObject({ allowProvisioning: true });
    // The hook recorded RobotProvisioned; the robot then connects (the ingest records it so).
    const log = new DynamoEventLog({ client: eventLog.client, tableName: eventLog.tableName });
    const appended = await executeRobotCommand(
      log,
      'lekiwi-ON0001',
      { type: 'RecordPresence', presence: connectedEvent('lekiwi-ON0001', 1, Date.now()) },
      { now: () => new Date() },
    );
    expect(appended.status).toBe('appended');
    expect((await log.readEvents('lekiwi-ON0001')).events.map((recorded) => recorded.event.type)).toEqual(['RobotProvisioned', 'RobotConnected']);

    expect(await invoke(hookInput({ SerialNumber: 'ON0001' }, 'cert-twin'))).toEqual({ allowProvisioning: false });
    expect(await registry.readSerial('ON0001')).toMatchObject({
      certificateId: 'cert-live',
      lastRefusal: { reason: 'HOOK_DENIED_ALREADY_CLAIMED', certificateId: 'cert-twin' },
    });
  });

  it('refuses a claim certificate the batch does not list, keeping HOOK_DENIED_WRONG_BATCH on the serial and its place', async () => {
    await registerSerials(registry, { batchId: 'LINE-9', model: 'lekiwi', serials: ['WB0001'], claimCertificateIds: ['claim-cert-line-9'], now: () => new Date() });

    expect(await invoke(hookInput({ SerialNumber: 'WB0001' }, 'cert-foreign'))).toEqual({ allowProvisioning: false });

    expect(await registry.readSerial('WB0001')).toMatchObject({
      state: 'registered',
      lastRefusal: { reason: 'HOOK_DENIED_WRONG_BATCH', certificateId: 'cert-foreign' },
    });
    expect(await registry.readBatch('LINE-9')).toMatchObject({ claimed: 0 });
    const log = new DynamoEventLog({ client: eventLog.client, tableName: eventLog.tableName });
    expect((await log.readEvents('lekiwi-WB0001')).events).toEqual([]);
    expect(await invoke({ ...hookInput({ SerialNumber: 'WB0001' }, 'cert-own'), claimCertificateId: 'claim-cert-line-9' })).toMatchObject({ allowProvisioning: true });
  });

  it('refuses a malformed invocation without throwing', async () => {
    expect(await invoke({ certificateId: 'x' })).toEqual({ allowProvisioning: false });
  });
});
