import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoEventLog } from '../../functions/adapters/dynamo-event-log.js';
import { DynamoFactoryRegistry, DynamoProvisioningClaims } from '../../functions/adapters/dynamo-factory-registry.js';
import { executeRobotCommand } from '../../functions/app/execute-robot-command.js';
import { preProvisioningHook } from '../../functions/app/provisioning/pre-provisioning-hook.js';
import { registerSerials } from '../../functions/app/provisioning/register-serials.js';
import { createTestEventLog } from '../support/dynamo.js';
import { createTestFactoryTable, hookInput } from '../support/factory.js';
import { connectedEvent } from '../support/lifecycle-events.js';

/** The factory's allow-list and the event log on DynamoDB Local, through the hook use case as IoT would call it. */
let table: Awaited<ReturnType<typeof createTestFactoryTable>>;
let events: Awaited<ReturnType<typeof createTestEventLog>>;
let registry: DynamoFactoryRegistry;
let claims: DynamoProvisioningClaims;
let log: DynamoEventLog;
const now = () => new Date();
/** hookInput's claim certificate: the one every batch below records, unless a test says otherwise. */
const CLAIM = 'claim-cert-batch-a';
const hook = (input: unknown) => preProvisioningHook({ claims, now }, input);
const withClaim = (input: ReturnType<typeof hookInput>, claimCertificateId: string) => ({ ...input, claimCertificateId });
const serialsOf = (prefix: string, count: number) => Array.from({ length: count }, (_, i) => `${prefix}${String(i).padStart(4, '0')}`);
const register = (batchId: string, serials: string[], options: { allowance?: number; model?: 'lekiwi' | 'xle'; claims?: string[] } = {}) =>
  registerSerials(registry, {
    batchId,
    model: options.model ?? 'lekiwi',
    serials,
    allowance: options.allowance,
    claimCertificateIds: options.claims ?? [CLAIM],
    now,
  });
const eventTypes = async (robotId: string) => (await log.readEvents(robotId)).events.map((recorded) => recorded.event.type);

beforeAll(async () => {
  table = await createTestFactoryTable();
  events = await createTestEventLog(table.client);
  registry = new DynamoFactoryRegistry({ client: table.client, tableName: table.tableName });
  claims = new DynamoProvisioningClaims({ client: table.client, factoryTable: table.tableName, eventLogTable: events.tableName });
  log = new DynamoEventLog({ client: table.client, tableName: events.tableName });
});

afterAll(async () => {
  await table.drop();
  await events.drop();
});

describe('factory registry', () => {
  it('registers idempotently: a second run changes nothing and the batch counts each serial once', async () => {
    const first = await registerSerials(registry, { batchId: 'IDEM', model: 'lekiwi', serials: ['ID0001', 'ID0002'], now });
    const again = await registerSerials(registry, { batchId: 'IDEM', model: 'lekiwi', serials: ['ID0002', 'ID0003'], now });
    expect(first.registered).toEqual(['ID0001', 'ID0002']);
    expect(again).toMatchObject({ registered: ['ID0003'], unchanged: ['ID0002'], conflicts: [], failed: [] });
    expect(again.batch).toMatchObject({ registered: 3, claimed: 0, allowance: 3, allowanceFixed: false, claimCertificateIds: [] });
    const listed = [];
    for await (const record of registry.listBatch('IDEM')) listed.push(record.serial);
    expect(listed).toEqual(['ID0001', 'ID0002', 'ID0003']);
  });

  it('refuses to move a serial to another batch or model, writing nothing', async () => {
    await register('HOME', ['MV0001']);
    const moved = await registerSerials(registry, { batchId: 'OTHER', model: 'xle', serials: ['MV0001'], now });
    expect(moved.conflicts).toEqual([{ serial: 'MV0001', problem: 'serial MV0001 is already registered in batch HOME as lekiwi' }]);
    expect(await registry.readSerial('MV0001')).toMatchObject({ batchId: 'HOME', model: 'lekiwi' });
  });

  it('records claim certificates on a batch idempotently, before or after its serials, and only for its model', async () => {
    expect(await registry.addClaimCertificate('EARLY', 'xle', 'claim-early', now())).toMatchObject({
      status: 'added',
      batch: { batchId: 'EARLY', model: 'xle', registered: 0, claimed: 0, allowance: 0, claimCertificateIds: ['claim-early'] },
    });
    await registerSerials(registry, { batchId: 'EARLY', model: 'xle', serials: ['EA0001', 'EA0002'], now });
    expect(await registry.addClaimCertificate('EARLY', 'xle', 'claim-early', now())).toMatchObject({ status: 'unchanged' });
    expect(await registry.addClaimCertificate('EARLY', 'xle', 'claim-second', now())).toMatchObject({ status: 'added' });
    expect(await registry.addClaimCertificate('EARLY', 'lekiwi', 'claim-third', now())).toMatchObject({ status: 'model-conflict' });
    expect(await registry.readBatch('EARLY')).toMatchObject({ registered: 2, allowance: 2, claimCertificateIds: ['claim-early', 'claim-second'] });
  });

  it('200 concurrent claims on a batch of 150 admit exactly 150, each with one RobotProvisioned; the rest are refused as exhausted', async () => {
    const serials = serialsOf('RC', 200);
    await register('RACE', serials, { allowance: 150 });

    const results = await Promise.all(serials.map((serial) => hook(hookInput({ SerialNumber: serial, Model: 'lekiwi' }))));

    const admitted = results.filter((result) => result.decision.allow);
    expect(admitted).toHaveLength(150);
    expect(results.filter((result) => !result.decision.allow).map((result) => !result.decision.allow && result.decision.reason)).toEqual(
      Array(50).fill('HOOK_DENIED_BATCH_EXHAUSTED'),
    );
    expect(await registry.readBatch('RACE')).toMatchObject({ allowance: 150, claimed: 150, registered: 200 });
    const states: string[] = [];
    for await (const record of registry.listBatch('RACE')) states.push(record.state);
    expect(states.filter((state) => state === 'provisioned')).toHaveLength(150);
    // The claim and its event are one transaction: every admitted robot has exactly one, no refused robot has any.
    const logged = await Promise.all(results.map(async (result) => (result.decision.serial ? eventTypes(`lekiwi-${result.decision.serial}`) : [])));
    expect(logged.filter((types) => types.length > 0)).toEqual(Array(150).fill(['RobotProvisioned']));
  }, 60_000);

  it('refuses another batch\'s claim certificate, and a batch with none recorded, as HOOK_DENIED_WRONG_BATCH, spending nothing', async () => {
    await register('OWN', ['WB0001', 'WB0002'], { claims: ['claim-cert-own'] });
    await registerSerials(registry, { batchId: 'BARE', model: 'lekiwi', serials: ['WB0100'], now });

    const foreign = await hook(hookInput({ SerialNumber: 'WB0001', Model: 'lekiwi' }, 'cert-foreign'));
    const bare = await hook(hookInput({ SerialNumber: 'WB0100' }, 'cert-bare'));

    expect(foreign).toMatchObject({ response: { allowProvisioning: false }, decision: { reason: 'HOOK_DENIED_WRONG_BATCH', thingName: 'lekiwi-WB0001' } });
    expect(bare.decision).toMatchObject({ allow: false, reason: 'HOOK_DENIED_WRONG_BATCH' });
    expect(await registry.readBatch('OWN')).toMatchObject({ claimed: 0 });
    expect(await registry.readSerial('WB0001')).toMatchObject({
      state: 'registered',
      lastRefusal: { reason: 'HOOK_DENIED_WRONG_BATCH', certificateId: 'cert-foreign' },
    });
    expect(await eventTypes('lekiwi-WB0001')).toEqual([]);

    // The batch's own claim is admitted; another batch's claim cannot re-image the robot either.
    expect((await hook(withClaim(hookInput({ SerialNumber: 'WB0001' }, 'cert-own'), 'claim-cert-own'))).decision).toMatchObject({ allow: true, claim: 'first' });
    expect((await hook(hookInput({ SerialNumber: 'WB0001' }, 'cert-hijack'))).decision).toMatchObject({ allow: false, reason: 'HOOK_DENIED_WRONG_BATCH' });
    expect(await registry.readSerial('WB0001')).toMatchObject({ certificateId: 'cert-own', supersededCertificateIds: [] });
    expect(await registry.readBatch('OWN')).toMatchObject({ claimed: 1 });
  });

  it('names the wrong batch before the count: an exhausted batch tells another batch\'s claim nothing of its places', async () => {
    await register('FULL', ['FU0001', 'FU0002'], { allowance: 1, claims: ['claim-cert-full'] });
    expect((await hook(withClaim(hookInput({ SerialNumber: 'FU0001' }), 'claim-cert-full'))).decision.allow).toBe(true);
    expect((await hook(withClaim(hookInput({ SerialNumber: 'FU0002' }), 'claim-cert-full'))).decision).toMatchObject({ reason: 'HOOK_DENIED_BATCH_EXHAUSTED' });
    expect((await hook(hookInput({ SerialNumber: 'FU0002' }))).decision).toMatchObject({ reason: 'HOOK_DENIED_WRONG_BATCH' });
  });

  it('refuses an unknown serial and a retired one with their reasons; the retired record keeps the refusal', async () => {
    await register('RET', ['RT0001']);
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
    await register('REIMG', ['RI0001'], { allowance: 1 });
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
    // The batch of one is full, yet the re-image took no new place; the repeat appended nothing.
    expect(await registry.readBatch('REIMG')).toMatchObject({ allowance: 1, claimed: 1 });
    const recorded = (await log.readEvents('lekiwi-RI0001')).events.map((entry) => entry.event);
    expect(recorded).toMatchObject([
      { type: 'RobotProvisioned', eventId: 'provisioned:cert-first', data: { claim: 'first' } },
      { type: 'RobotProvisioned', eventId: 'provisioned:cert-second', data: { claim: 'reimage', supersededCertificateId: 'cert-first' } },
    ]);
  });

  it('refuses a second robot for a serial whose robot is online (read with the record, without the robot naming its model)', async () => {
    await register('TWIN', ['TW0001']);
    await hook(hookInput({ SerialNumber: 'TW0001' }, 'cert-original'));
    const connected = await executeRobotCommand(log, 'lekiwi-TW0001', { type: 'RecordPresence', presence: connectedEvent('lekiwi-TW0001', 1, Date.now()) }, { now });
    expect(connected.status).toBe('appended');

    const twin = await hook(hookInput({ SerialNumber: 'TW0001' }, 'cert-twin'));
    const twinNamingModel = await hook(hookInput({ SerialNumber: 'TW0001', Model: 'lekiwi' }, 'cert-twin-2'));

    expect(twin).toMatchObject({ response: { allowProvisioning: false }, decision: { reason: 'HOOK_DENIED_ALREADY_CLAIMED' } });
    expect(twinNamingModel.decision).toMatchObject({ reason: 'HOOK_DENIED_ALREADY_CLAIMED' });
    expect(await registry.readSerial('TW0001')).toMatchObject({ certificateId: 'cert-original', supersededCertificateIds: [] });
  });

  it('refuses a model mismatch and a request without a valid serial, naming the parameter', async () => {
    await register('MM', ['XL0001'], { model: 'xle' });
    expect((await hook(hookInput({ SerialNumber: 'XL0001', Model: 'lekiwi' }))).decision).toMatchObject({ reason: 'HOOK_DENIED_MODEL_MISMATCH' });
    expect((await hook(hookInput({ Model: 'lekiwi' }))).decision).toMatchObject({
      reason: 'HOOK_DENIED_INVALID_REQUEST',
      problem: expect.stringContaining('parameters.SerialNumber'),
    });
    expect((await hook({ parameters: {} })).decision).toMatchObject({ reason: 'HOOK_DENIED_INVALID_REQUEST', problem: expect.stringContaining('certificateId') });
  });
});
