import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoFactoryRegistry } from '../../functions/adapters/dynamo-factory-registry.js';
import { preProvisioningHook, type HolderPresence } from '../../functions/app/provisioning/pre-provisioning-hook.js';
import { registerSerials } from '../../functions/app/provisioning/register-serials.js';
import { createTestFactoryTable, hookInput } from '../support/factory.js';
import { InMemoryEventLog } from '../support/in-memory-event-log.js';

/** The factory's allow-list on DynamoDB Local, through the hook use case as IoT would call it. */
let table: Awaited<ReturnType<typeof createTestFactoryTable>>;
let registry: DynamoFactoryRegistry;
const online = new Set<string>();
const presence: HolderPresence = { isOnline: async (thingName) => online.has(thingName) };
const now = () => new Date();
const log = new InMemoryEventLog();
const hook = (input: unknown) => preProvisioningHook({ registry, presence, log, now }, input);
const serialsOf = (prefix: string, count: number) => Array.from({ length: count }, (_, i) => `${prefix}${String(i).padStart(4, '0')}`);

beforeAll(async () => {
  table = await createTestFactoryTable();
  registry = new DynamoFactoryRegistry({ client: table.client, tableName: table.tableName });
});

afterAll(async () => {
  await table.drop();
});

describe('factory registry', () => {
  it('registers idempotently: a second run changes nothing and the batch counts each serial once', async () => {
    const first = await registerSerials(registry, { batchId: 'IDEM', model: 'lekiwi', serials: ['ID0001', 'ID0002'], now });
    const again = await registerSerials(registry, { batchId: 'IDEM', model: 'lekiwi', serials: ['ID0002', 'ID0003'], now });
    expect(first.registered).toEqual(['ID0001', 'ID0002']);
    expect(again).toMatchObject({ registered: ['ID0003'], unchanged: ['ID0002'], conflicts: [], failed: [] });
    expect(again.batch).toMatchObject({ registered: 3, claimed: 0, allowance: 3, allowanceFixed: false });
    const listed = [];
    for await (const record of registry.listBatch('IDEM')) listed.push(record.serial);
    expect(listed).toEqual(['ID0001', 'ID0002', 'ID0003']);
  });

  it('refuses to move a serial to another batch or model, writing nothing', async () => {
    await registerSerials(registry, { batchId: 'HOME', model: 'lekiwi', serials: ['MV0001'], now });
    const moved = await registerSerials(registry, { batchId: 'OTHER', model: 'xle', serials: ['MV0001'], now });
    expect(moved.conflicts).toEqual([{ serial: 'MV0001', problem: 'serial MV0001 is already registered in batch HOME as lekiwi' }]);
    expect(await registry.readSerial('MV0001')).toMatchObject({ batchId: 'HOME', model: 'lekiwi' });
  });

  it('50 concurrent claims on a batch of 10 admit exactly 10; the others are refused as exhausted', async () => {
    const serials = serialsOf('RC', 50);
    await registerSerials(registry, { batchId: 'RACE', model: 'lekiwi', serials, allowance: 10, now });

    const results = await Promise.all(serials.map((serial) => hook(hookInput({ SerialNumber: serial, Model: 'lekiwi' }))));

    const admitted = results.filter((result) => result.response.allowProvisioning);
    expect(admitted).toHaveLength(10);
    expect(results.filter((result) => !result.decision.allow).map((result) => !result.decision.allow && result.decision.reason)).toEqual(
      Array(40).fill('HOOK_DENIED_BATCH_EXHAUSTED'),
    );
    expect(await registry.readBatch('RACE')).toMatchObject({ allowance: 10, claimed: 10, registered: 50 });
    const states: string[] = [];
    for await (const record of registry.listBatch('RACE')) states.push(record.state);
    expect(states.filter((state) => state === 'provisioned')).toHaveLength(10);
  });

  it('refuses an unknown serial and a retired one with their reasons; the retired record keeps the refusal', async () => {
    await registerSerials(registry, { batchId: 'RET', model: 'lekiwi', serials: ['RT0001'], now });
    expect(await registry.retire('RT0001', now())).toMatchObject({ status: 'retired' });
    expect(await registry.retire('RT0001', now())).toMatchObject({ status: 'already-retired' });
    expect(await registry.retire('NOSUCH', now())).toEqual({ status: 'unknown-serial' });

    const unknown = await hook(hookInput({ SerialNumber: 'NOSUCH' }));
    const retired = await hook(hookInput({ SerialNumber: 'RT0001' }, 'cert-retired'));

    expect(unknown).toMatchObject({ response: { allowProvisioning: false }, decision: { reason: 'HOOK_DENIED_UNKNOWN_SERIAL' } });
    expect(retired).toMatchObject({ response: { allowProvisioning: false }, decision: { reason: 'HOOK_DENIED_RETIRED' } });
    expect(await registry.readSerial('RT0001')).toMatchObject({
      state: 'retired',
      lastRefusal: { reason: 'HOOK_DENIED_RETIRED', certificateId: 'cert-retired' },
    });
    expect(await registry.readSerial('NOSUCH')).toBeUndefined();
  });

  it('admits a re-image of a provisioned serial under the same thing name and lists the old certificate', async () => {
    await registerSerials(registry, { batchId: 'REIMG', model: 'lekiwi', serials: ['RI0001'], allowance: 1, now });
    const first = await hook(hookInput({ SerialNumber: 'RI0001', Model: 'lekiwi' }, 'cert-first'));
    const retried = await hook(hookInput({ SerialNumber: 'RI0001', Model: 'lekiwi' }, 'cert-first'));
    const reimaged = await hook(hookInput({ SerialNumber: 'RI0001', Model: 'lekiwi' }, 'cert-second'));

    expect(first.response).toEqual({
      allowProvisioning: true,
      parameterOverrides: { ThingName: 'lekiwi-RI0001', Model: 'lekiwi', Batch: 'REIMG' },
    });
    expect(retried.decision).toMatchObject({ allow: true, claim: 'repeat' });
    expect(reimaged).toMatchObject({
      response: { allowProvisioning: true, parameterOverrides: { ThingName: 'lekiwi-RI0001' } },
      decision: { claim: 'reimage', supersededCertificateId: 'cert-first' },
    });
    expect(await registry.readSerial('RI0001')).toMatchObject({
      state: 'provisioned',
      thingName: 'lekiwi-RI0001',
      certificateId: 'cert-second',
      supersededCertificateIds: ['cert-first'],
      claims: 2,
    });
    // The batch of one is full, yet the re-image took no new place.
    expect(await registry.readBatch('REIMG')).toMatchObject({ allowance: 1, claimed: 1 });
  });

  it('refuses a second robot for a serial whose robot is online', async () => {
    await registerSerials(registry, { batchId: 'TWIN', model: 'lekiwi', serials: ['TW0001'], now });
    await hook(hookInput({ SerialNumber: 'TW0001' }, 'cert-original'));
    online.add('lekiwi-TW0001');

    const twin = await hook(hookInput({ SerialNumber: 'TW0001' }, 'cert-twin'));

    expect(twin).toMatchObject({ response: { allowProvisioning: false }, decision: { reason: 'HOOK_DENIED_ALREADY_CLAIMED' } });
    expect(await registry.readSerial('TW0001')).toMatchObject({ certificateId: 'cert-original', supersededCertificateIds: [] });
  });

  it('refuses a model mismatch and a request without a valid serial, naming the parameter', async () => {
    await registerSerials(registry, { batchId: 'MM', model: 'xle', serials: ['XL0001'], now });
    expect((await hook(hookInput({ SerialNumber: 'XL0001', Model: 'lekiwi' }))).decision).toMatchObject({ reason: 'HOOK_DENIED_MODEL_MISMATCH' });
    expect((await hook(hookInput({ Model: 'lekiwi' }))).decision).toMatchObject({
      reason: 'HOOK_DENIED_INVALID_REQUEST',
      problem: expect.stringContaining('parameters.SerialNumber'),
    });
    expect((await hook({ parameters: {} })).decision).toMatchObject({ reason: 'HOOK_DENIED_INVALID_REQUEST', problem: expect.stringContaining('certificateId') });
  });
});
