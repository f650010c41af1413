import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DynamoEventLog } from '../../functions/adapters/dynamo-event-log.js';
import { DynamoFactoryRegistry } from '../../functions/adapters/dynamo-factory-registry.js';
import { registerSerials } from '../../functions/app/provisioning/register-serials.js';
import { lifecycleOf } from '../../functions/domain/lifecycle.js';
import { CertificateAuthority } from '../../local/certificate-authority.js';
import { openOrIssueLocalClaim, type LocalClaim } from '../../local/claim-certificates.js';
import { localFleetProvisioning } from '../../local/fleet-provisioning.js';
import { type BrokerLogEntry, type IotBroker, startIotBroker } from '../../local/iot-broker.js';
import { OWNERSHIP_TOKEN_TTL_MS } from '../../local/iot-broker/create-certificate-from-csr.js';
import { ThingRegistry } from '../../local/thing-registry.js';
import { provisioningTopics, type DomainEvent } from '../../schemas/index.js';
import {
  ClaimSession,
  connectMqtt,
  keyAndCsr,
  provisionByClaim,
  ProvisioningRejected,
  subscribeReturnCodes,
  type Endpoint,
} from '../support/claim-robot.js';
import { createTestEventLog } from '../support/dynamo.js';
import { createTestFactoryTable } from '../support/factory.js';

/**
 * Fleet provisioning by claim through the local IoT Core (issue 11): a real broker over mTLS, mqtt.js as the bare
 * robot, the pre-provisioning hook's use case on a factory table and event log in DynamoDB Local — the composition
 * `npm start` uses (local/fleet-provisioning.ts).
 */
const BATCH = 'LINE-1';
let stateDir: string;
let ca: CertificateAuthority;
let broker: IotBroker;
let things: ThingRegistry;
let claim: LocalClaim;
/** Another batch's claim: a claim certificate the broker admits, but not BATCH's. */
let otherClaim: LocalClaim;
let endpoint: Endpoint;
let factory: Awaited<ReturnType<typeof createTestFactoryTable>>;
let eventLogTable: Awaited<ReturnType<typeof createTestEventLog>>;
let registry: DynamoFactoryRegistry;
let eventLog: DynamoEventLog;
let templateName: string;
/** Added to the tokens' clock: moves it past an ownership token's hour. */
let clockSkewMs = 0;
const logs: BrokerLogEntry[] = [];
const clients: MqttClient[] = [];
const sessions: ClaimSession[] = [];

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'iot-register-thing-'));
  ca = await CertificateAuthority.openOrCreate(join(stateDir, 'ca'));
  claim = await openOrIssueLocalClaim(stateDir, BATCH);
  otherClaim = await openOrIssueLocalClaim(stateDir, 'OTHER');
  const server = await ca.issueServerCertificate(['localhost', '127.0.0.1']);
  factory = await createTestFactoryTable();
  eventLogTable = await createTestEventLog(factory.client);
  registry = new DynamoFactoryRegistry({ client: factory.client, tableName: factory.tableName });
  eventLog = new DynamoEventLog({ client: factory.client, tableName: eventLogTable.tableName });
  things = ThingRegistry.in(stateDir);
  const provisioning = localFleetProvisioning({
    stateDir,
    ca,
    dynamo: factory.client,
    factoryTable: factory.tableName,
    eventLogTable: eventLogTable.tableName,
    registry: things,
    log: (entry) => logs.push(entry),
    now: () => Date.now() + clockSkewMs,
  });
  templateName = provisioning.templateName;
  broker = await startIotBroker({
    port: 0,
    caCertificatePem: ca.certificatePem,
    serverCertificatePem: server.certificatePem,
    serverPrivateKeyPem: server.privateKeyPem,
    registry: things,
    rules: [],
    claims: provisioning.claims,
    reservedTopicServices: provisioning.reservedTopicServices,
    log: (entry) => logs.push(entry),
  });
  endpoint = { host: '127.0.0.1', port: broker.port, caPem: ca.certificatePem };
  const now = () => new Date();
  await registerSerials(registry, { batchId: BATCH, model: 'lekiwi', serials: ['RT0001', 'RT0002', 'RT0003', 'RT0004', 'RT0005', 'RT0006'], claimCertificateIds: [claim.certificateId], now });
  await registerSerials(registry, { batchId: 'SMALL', model: 'lekiwi', serials: ['SM0001', 'SM0002'], allowance: 1, claimCertificateIds: [claim.certificateId], now });
  await registerSerials(registry, { batchId: 'OTHER', model: 'lekiwi', serials: ['OT0001'], claimCertificateIds: [otherClaim.certificateId], now });
});

afterEach(() => {
  clockSkewMs = 0;
  for (const client of clients.splice(0)) client.end(true);
  for (const session of sessions.splice(0)) session.close();
});

afterAll(async () => {
  await broker?.stop();
  await factory?.drop();
  await eventLogTable?.drop();
  await rm(stateDir, { recursive: true, force: true });
});

async function openSession(serial: string): Promise<ClaimSession> {
  const session = await ClaimSession.open(endpoint, claim, serial, templateName);
  sessions.push(session);
  return session;
}

async function provision(serial: string) {
  const robot = await provisionByClaim({ endpoint, claim, serial, model: 'lekiwi', templateName, attempts: 1 });
  clients.push(robot.client);
  return robot;
}

async function eventsOf(robotId: string): Promise<DomainEvent[]> {
  return (await eventLog.readEvents(robotId)).events.map((recorded) => recorded.event);
}

/** CreateCertificateFromCsr, then RegisterThing with `parameters`: the RegisterThing reply and the certificate. */
async function register(serial: string, parameters: Record<string, string>) {
  const session = await openSession(serial);
  const { csrPem, privateKeyPem } = await keyAndCsr(`lekiwi-${serial}`);
  const issued = await session.createCertificateFromCsr(csrPem);
  expect(issued.accepted).toBe(true);
  const { certificateOwnershipToken, certificateId, certificatePem } = issued.body as Record<string, string>;
  const reply = await session.registerThing(certificateOwnershipToken!, parameters);
  return { session, reply, token: certificateOwnershipToken!, certificateId: certificateId!, credentials: { certificatePem: certificatePem!, privateKeyPem } };
}

describe('RegisterThing (fleet provisioning by claim, local IoT Core)', () => {
  it('provisions a bare robot: CSR, RegisterThing, then it connects as <model>-<serial> with its own certificate; RobotProvisioned is in its log', async () => {
    const robot = await provision('RT0001');

    expect(robot.thingName).toBe('lekiwi-RT0001');
    expect(robot.client.connected).toBe(true);
    expect(broker.connectedThings()).toContain('lekiwi-RT0001');
    expect(await things.lookup('lekiwi-RT0001')).toMatchObject({ model: 'lekiwi', certificateIds: [robot.certificateId] });
    expect(await things.certificateStatus(robot.certificateId)).toBe('ACTIVE');
    expect(await registry.readSerial('RT0001')).toMatchObject({ state: 'provisioned', certificateId: robot.certificateId, claimCertificateId: claim.certificateId });
    expect(await eventsOf('lekiwi-RT0001')).toEqual([
      expect.objectContaining({
        type: 'RobotProvisioned',
        eventId: `provisioned:${robot.certificateId}`,
        data: {
          serial: 'RT0001',
          model: 'lekiwi',
          batch: BATCH,
          certificateId: robot.certificateId,
          claim: 'first',
          // The hook reads the expiry of the certificate IoT made (the local CA's: ten years).
          certificateNotAfter: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
        },
      }),
    ]);
    const [provisioned] = await eventsOf('lekiwi-RT0001');
    expect(Date.parse((provisioned?.data as { certificateNotAfter: string }).certificateNotAfter)).toBeGreaterThan(Date.now() + 365 * 86_400_000);
    const head = await eventLog.readHead('lekiwi-RT0001');
    expect(head?.state.provisioning).toMatchObject({ serial: 'RT0001', batch: BATCH, certificateId: robot.certificateId, connected: false });
    expect(lifecycleOf(head!.state)).toBe('provisioning');
    expect(logs).toContainEqual(expect.objectContaining({ message: 'RegisterThing: robot registered', thingName: 'lekiwi-RT0001', allowed: true, hookMs: expect.any(Number) }));
  });

  it('answers the documented accepted payload: {deviceConfiguration, thingName}', async () => {
    const { reply } = await register('RT0002', { SerialNumber: 'RT0002', Model: 'lekiwi' });
    expect(reply).toEqual({ accepted: true, body: { deviceConfiguration: {}, thingName: 'lekiwi-RT0002' } });
  });

  it.each([
    ['an unknown serial', 'NOPE0001', 'HOOK_DENIED_UNKNOWN_SERIAL'],
    ['a retired serial', 'RT0003', 'HOOK_DENIED_RETIRED'],
  ])('refuses %s with 403 AccessDenied naming the reason; nothing is registered and the certificate cannot connect', async (_, serial, reason) => {
    if (serial === 'RT0003') await registry.retire('RT0003', new Date());
    const { reply, credentials } = await register(serial, { SerialNumber: serial, Model: 'lekiwi' });

    expect(reply).toEqual({
      accepted: false,
      body: { statusCode: 403, errorCode: 'AccessDenied', errorMessage: `The pre-provisioning hook denied the request: ${reason}` },
    });
    expect(await things.lookup(`lekiwi-${serial}`)).toBeUndefined();
    expect(await eventsOf(`lekiwi-${serial}`)).toEqual([]);
    await expect(connectMqtt(endpoint, `lekiwi-${serial}`, credentials)).rejects.toThrow(/Not authorized|closed/i);
  });

  it("refuses a batch's claim beyond its allowance with HOOK_DENIED_BATCH_EXHAUSTED, registering nothing", async () => {
    await provision('SM0001');
    const refused: unknown = await provision('SM0002').catch((error: unknown) => error);
    expect(refused).toBeInstanceOf(ProvisioningRejected);
    expect(refused).toMatchObject({
      request: 'RegisterThing',
      body: { statusCode: 403, errorCode: 'AccessDenied', errorMessage: 'The pre-provisioning hook denied the request: HOOK_DENIED_BATCH_EXHAUSTED' },
    });
    expect(await things.lookup('lekiwi-SM0002')).toBeUndefined();
    expect(await registry.readSerial('SM0002')).toMatchObject({ state: 'registered', lastRefusal: { reason: 'HOOK_DENIED_BATCH_EXHAUSTED' } });
  });

  it("refuses another batch's claim certificate with HOOK_DENIED_WRONG_BATCH, registering nothing and spending no place", async () => {
    const refused: unknown = await provisionByClaim({ endpoint, claim: otherClaim, serial: 'RT0006', model: 'lekiwi', templateName, attempts: 1 }).catch(
      (error: unknown) => error,
    );
    expect(refused).toMatchObject({
      request: 'RegisterThing',
      body: { statusCode: 403, errorCode: 'AccessDenied', errorMessage: 'The pre-provisioning hook denied the request: HOOK_DENIED_WRONG_BATCH' },
    });
    expect(await things.lookup('lekiwi-RT0006')).toBeUndefined();
    expect(await registry.readSerial('RT0006')).toMatchObject({ state: 'registered', lastRefusal: { reason: 'HOOK_DENIED_WRONG_BATCH' } });
    expect(await eventsOf('lekiwi-RT0006')).toEqual([]);
  });

  it('re-image: the same serial with a new key provisions as the same thing; the old certificate is revoked and refused, the history kept', async () => {
    const first = await provision('RT0004');
    const claimedBefore = (await registry.readBatch(BATCH))!.claimed;
    first.client.end(true);
    await expect.poll(() => broker.connectedThings().includes('lekiwi-RT0004'), { message: 'the first image offline' }).toBe(false);

    const second = await provision('RT0004');

    expect(second.thingName).toBe('lekiwi-RT0004');
    expect(second.certificateId).not.toBe(first.certificateId);
    expect(await things.lookup('lekiwi-RT0004')).toMatchObject({ certificateIds: [first.certificateId, second.certificateId] });
    expect(await things.certificateStatus(first.certificateId)).toBe('REVOKED');
    expect(await things.certificateStatus(second.certificateId)).toBe('ACTIVE');
    await expect(connectMqtt(endpoint, 'lekiwi-RT0004', first)).rejects.toThrow(/Not authorized|closed/i);
    expect(logs).toContainEqual(expect.objectContaining({ message: expect.stringMatching(/not attached to a thing named "lekiwi-RT0004"/), certificateId: first.certificateId }));
    expect(second.client.connected).toBe(true);
    expect((await eventsOf('lekiwi-RT0004')).map((event) => [event.type, event.data])).toEqual([
      ['RobotProvisioned', expect.objectContaining({ certificateId: first.certificateId, claim: 'first' })],
      ['RobotProvisioned', expect.objectContaining({ certificateId: second.certificateId, claim: 'reimage', supersededCertificateId: first.certificateId })],
    ]);
    expect(await registry.readSerial('RT0004')).toMatchObject({ claims: 2, supersededCertificateIds: [first.certificateId] });
    expect(await registry.readBatch(BATCH)).toMatchObject({ claimed: claimedBefore }); // the re-image took no new place
  });

  it('an ownership token is single use: reusing it is rejected 400 InvalidCertificateOwnershipToken', async () => {
    const { session, reply, token } = await register('RT0005', { SerialNumber: 'RT0005', Model: 'lekiwi' });
    expect(reply.accepted).toBe(true);

    expect(await session.registerThing(token, { SerialNumber: 'RT0005', Model: 'lekiwi' })).toEqual({
      accepted: false,
      body: { statusCode: 400, errorCode: 'InvalidCertificateOwnershipToken', errorMessage: expect.stringMatching(/invalid, expired .* or already used/) },
    });
    expect(await session.registerThing('', {})).toMatchObject({ accepted: false, body: { statusCode: 400, errorCode: 'InvalidCertificateOwnershipToken' } });
  });

  it('an ownership token older than an hour is rejected, and the hook never sees it', async () => {
    const session = await openSession('RT0006');
    const { csrPem } = await keyAndCsr('lekiwi-RT0006');
    const issued = await session.createCertificateFromCsr(csrPem);
    clockSkewMs = OWNERSHIP_TOKEN_TTL_MS + 1;

    const reply = await session.registerThing(String(issued.body.certificateOwnershipToken), { SerialNumber: 'RT0006', Model: 'lekiwi' });

    expect(reply).toMatchObject({ accepted: false, body: { statusCode: 400, errorCode: 'InvalidCertificateOwnershipToken' } });
    expect(await registry.readSerial('RT0006')).toMatchObject({ state: 'registered', claims: 0 });
    expect(await things.lookup('lekiwi-RT0006')).toBeUndefined();
  });

  it('a claim certificate publishing telemetry is disconnected; subscribing beyond its provisioning topics gets 0x80', async () => {
    const session = await openSession('RT0007');
    const { registerThing } = provisioningTopics(templateName);
    expect(await subscribeReturnCodes(session.client, ['dt/heartbeat/+/telemetry', 'cmd/heartbeat/lekiwi-RT0001/#', '$aws/provisioning-templates/+/provision/json/accepted', registerThing.accepted])).toEqual([128, 128, 128, 1]);

    const closed = new Promise<void>((resolve) => session.client.once('close', () => resolve()));
    session.client.publish('dt/heartbeat/lekiwi-RT0007/telemetry', JSON.stringify({ sampledAt: new Date().toISOString() }), { qos: 1 });
    await closed;
    expect(logs).toContainEqual(expect.objectContaining({ clientId: 'claim-RT0007', message: 'Publish not allowed by the thing policy: disconnecting' }));
  });

  it('a claim certificate cannot connect as a robot, nor a robot certificate as a claim', async () => {
    await expect(connectMqtt(endpoint, 'lekiwi-RT0001', claim)).rejects.toThrow(/Not authorized|closed/i);
    const robot = await ca.issueClientCertificate('claim-RT0008');
    await expect(connectMqtt(endpoint, 'claim-RT0008', robot)).rejects.toThrow(/Not authorized|closed/i);
  });
});
