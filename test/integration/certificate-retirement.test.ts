import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { derCsrBuilder } from '../../agent/adapters/provisioning-store.js';
import { DynamoEventLog } from '../../functions/adapters/dynamo-event-log.js';
import { DynamoFactoryRegistry, DynamoProvisioningClaims } from '../../functions/adapters/dynamo-factory-registry.js';
import { retireCertificatesInStreamBatch } from '../../functions/adapters/stream-consumers.js';
import { executeRobotCommand } from '../../functions/app/execute-robot-command.js';
import { preProvisioningHook } from '../../functions/app/provisioning/pre-provisioning-hook.js';
import { registerSerials } from '../../functions/app/provisioning/register-serials.js';
import { certificateView } from '../../functions/domain/robot-view.js';
import { certificateOf } from '../../functions/domain/robot-state.js';
import { handleRotationMessage } from '../../functions/app/certificate-rotation.js';
import { toEventItem } from '../../functions/adapters/event-log-items.js';
import { CertificateAuthority } from '../../local/certificate-authority.js';
import { localCertificateRegistry } from '../../local/certificate-rotation.js';
import { startStreamPoller, type StreamPoller } from '../../local/stream-poller.js';
import { ThingRegistry } from '../../local/thing-registry.js';
import { RETIREMENT_RECORD_PATTERNS } from '../../schemas/stream-filters.js';
import { createTestEventLog, streamsClient } from '../support/dynamo.js';
import { createTestFactoryTable, hookInput } from '../support/factory.js';
import { StreamRecords } from '../support/stream-records.js';

/**
 * The certificate retirer (functions/app/retire-certificates.ts) with real parts: the pre-provisioning hook's use case
 * and the event log in DynamoDB Local, the log's stream read by the local cloud's stream poller with the mapping's
 * filter (schemas/stream-filters.ts), certificates from the local CA, and the local thing registry as IoT's registry.
 * Certificates are attached as the AWS template does (beside the old one, nothing revoked at registration), so what
 * ends revoked or inactive here was the retirer's doing.
 */
let stateDir: string;
let ca: CertificateAuthority;
let things: ThingRegistry;
let eventLog: DynamoEventLog;
let factory: Awaited<ReturnType<typeof createTestFactoryTable>>;
let table: Awaited<ReturnType<typeof createTestEventLog>>;
let claims: DynamoProvisioningClaims;
let poller: StreamPoller;
const handled: string[] = [];

const SERIAL = 'RT0001';
const THING = `lekiwi-${SERIAL}`;
const FIRST_EXPIRY = new Date('2029-06-30T12:00:00.000Z');
const SECOND_EXPIRY = new Date('2031-01-15T08:30:00.000Z');

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'certificate-retirement-'));
  ca = await CertificateAuthority.create();
  things = ThingRegistry.in(stateDir);
  factory = await createTestFactoryTable();
  table = await createTestEventLog();
  eventLog = new DynamoEventLog({ client: table.client, tableName: table.tableName });
  claims = new DynamoProvisioningClaims({ client: factory.client, factoryTable: factory.tableName, eventLogTable: table.tableName });
  const registry = new DynamoFactoryRegistry({ client: factory.client, tableName: factory.tableName });
  await registerSerials(registry, { batchId: 'LINE-R', model: 'lekiwi', serials: [SERIAL], claimCertificateIds: ['claim-cert-batch-a'], now: () => new Date() });
  const certificates = localCertificateRegistry(ca, things);
  poller = startStreamPoller({
    client: streamsClient(),
    streamArn: table.streamArn,
    handler: async (event) => {
      for (const record of event.Records) handled.push(String(record.dynamodb?.NewImage?.type?.S));
      return retireCertificatesInStreamBatch(event.Records, { certificates, eventLog });
    },
    batchSize: 100,
    bisectBatchOnFunctionError: true,
    maximumRetryAttempts: -1,
    filters: RETIREMENT_RECORD_PATTERNS,
    pollIntervalMs: 100,
  });
}, 60_000);

afterAll(async () => {
  await poller?.stop();
  await table?.drop();
  await factory?.drop();
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
});

/** The hook admits a certificate of the local CA (its PEM as IoT gives it), and the template attaches it. */
async function provision(notAfter: Date) {
  const certificate = await ca.issueClientCertificate(THING, { notAfter });
  const { decision } = await preProvisioningHook(
    { claims, now: () => new Date() },
    { ...hookInput({ SerialNumber: SERIAL, Model: 'lekiwi' }, certificate.certificateId), certificatePem: certificate.certificatePem },
  );
  expect(decision.allow).toBe(true);
  await things.attach(THING, certificate.certificateId);
  return certificate;
}

describe('certificate retirer', () => {
  it('a re-image: the superseded certificate ends REVOKED, the new one active, the thing and its history kept; notAfter recorded from the hook', async () => {
    const first = await provision(FIRST_EXPIRY);
    await poller.idle({ timeoutMs: 30_000 });
    expect(await things.certificateStatus(first.certificateId)).toBe('ACTIVE'); // a first claim retires nothing

    const second = await provision(SECOND_EXPIRY);
    await poller.idle({ timeoutMs: 30_000 });

    expect(await things.certificateStatus(first.certificateId)).toBe('REVOKED');
    expect(await things.standing(THING, first.certificateId)).toBe('inactive');
    expect(await things.standing(THING, second.certificateId)).toBe('active');
    expect((await things.lookup(THING))?.certificateIds).toEqual([first.certificateId, second.certificateId]);

    const events = (await eventLog.readEvents(THING)).events.map((recorded) => recorded.event);
    expect(events.map((event) => [event.type, 'claim' in event.data ? event.data.claim : undefined])).toEqual([
      ['RobotProvisioned', 'first'],
      ['RobotProvisioned', 'reimage'],
    ]);
    expect(events[0]?.data).toMatchObject({ certificateId: first.certificateId, certificateNotAfter: FIRST_EXPIRY.toISOString() });
    expect(events[1]?.data).toMatchObject({
      certificateId: second.certificateId,
      supersededCertificateId: first.certificateId,
      certificateNotAfter: SECOND_EXPIRY.toISOString(),
    });
    // The fleet view knows the expiry from provisioning on.
    const head = await eventLog.readHead(THING);
    expect(certificateView(head!.state)).toMatchObject({ id: second.certificateId, notAfter: SECOND_EXPIRY.toISOString(), rotatedAt: null });
  }, 90_000);

  it('an abandoned rotation: the new certificate the robot never used ends inactive; the one in use stays active', async () => {
    const inUse = (await eventLog.readHead(THING))!.state.provisioning!.certificateId;
    // The rotation function issued it (active, attached), then the robot could not connect with it.
    const { certificateId: abandoned } = await localCertificateRegistry(ca, things).issue(THING, await csrFor(THING));
    expect(await things.standing(THING, abandoned)).toBe('active');

    await reportFailure('rotation-failed:api-request-9001', { requestId: 'api-request-9001', reason: 'NEW_CERTIFICATE_REFUSED', certificateId: inUse, abandonedCertificateId: abandoned });
    await poller.idle({ timeoutMs: 30_000 });

    expect(await things.certificateStatus(abandoned)).toBe('INACTIVE');
    expect(await things.standing(THING, inUse)).toBe('active');
  }, 60_000);

  it('never deactivates the certificate in use, even when a report names it as abandoned', async () => {
    const inUse = (await eventLog.readHead(THING))!.state.provisioning!.certificateId;
    const before = handled.length;
    // A confused report (no `certificateId`): the robot's state says it uses this one, so it is kept.
    await reportFailure('rotation-failed:api-request-9002', { requestId: 'api-request-9002', reason: 'STORAGE_FAILED', abandonedCertificateId: inUse });
    await poller.idle({ timeoutMs: 30_000 });

    expect(handled.length).toBeGreaterThan(before); // the retirer did see it
    expect(await things.standing(THING, inUse)).toBe('active');
  }, 60_000);
});

describe('a certificate the robot never heard of', () => {
  /** The robot's replies, lost on the way (the link dropped): the cloud sent them, the robot got none. */
  const lost: { robotId: string; request: string; payload: unknown }[] = [];
  const rotation = () => ({
    certificates: localCertificateRegistry(ca, things),
    replies: { send: async (robotId: string, request: string, payload: unknown) => void lost.push({ robotId, request, payload }) },
    eventLog,
    now: () => new Date(),
    log: () => undefined,
  });
  /** The rotation function (the same one the Lambda runs) answers a request; the reply is lost. */
  async function requestLost(requestId: string, currentCertificateId: string): Promise<string> {
    const outcome = await handleRotationMessage(rotation(), { thingName: THING, message: 'request', requestId, csr: await csrFor(THING), currentCertificateId });
    expect(outcome).toMatchObject({ kind: 'issued' });
    return (outcome as { certificateId: string }).certificateId;
  }
  const inUse = async () => certificateOf((await eventLog.readHead(THING))!.state).id!;

  it("the agent's NO_REPLY (no certificate id) after a lost reply: the issued certificate ends INACTIVE, the one in use stays active; redelivery changes nothing", async () => {
    const current = await inUse();
    const issued = await requestLost('api-request-9101', current);
    expect(await things.standing(THING, issued)).toBe('active'); // issued, attached, and only the log knows it
    expect(lost.at(-1)).toMatchObject({ request: 'certificate-issued', payload: { requestId: 'api-request-9101', certificateId: issued } });

    await reportFailure('rotation-failed:api-request-9101', { requestId: 'api-request-9101', reason: 'NO_REPLY', certificateId: current });
    await poller.idle({ timeoutMs: 30_000 });

    expect(await things.certificateStatus(issued)).toBe('INACTIVE');
    expect(await things.standing(THING, issued)).toBe('inactive'); // the local registry keeps it on the thing as history
    expect(await things.standing(THING, current)).toBe('active');
    const failed = (await eventLog.readEvents(THING)).events.map(({ event }) => event).filter((event) => event.type === 'CertificateRotationFailed').at(-1);
    expect(failed?.data).toMatchObject({ requestId: 'api-request-9101', reason: 'NO_REPLY', abandonedCertificateId: issued });

    // The agent reports again (its outbox did not hear the ack), and the stream delivers the whole log again.
    const again = await executeRobotCommand(
      eventLog,
      THING,
      { type: 'RecordAgentEvent', event: { eventId: 'rotation-failed:api-request-9101', occurredAt: new Date().toISOString(), type: 'CertificateRotationFailed', data: { requestId: 'api-request-9101', reason: 'NO_REPLY', certificateId: current } } },
      { now: () => new Date() },
    );
    expect(again.status).toBe('duplicate');
    const stream = new StreamRecords();
    const all = (await eventLog.readEvents(THING)).events.map((recorded) => stream.record({ eventName: 'INSERT', item: toEventItem(recorded) } as never));
    expect(await retireCertificatesInStreamBatch(all, { certificates: localCertificateRegistry(ca, things), eventLog })).toEqual({ batchItemFailures: [] });
    expect(await things.certificateStatus(issued)).toBe('INACTIVE');
    expect(await things.standing(THING, current)).toBe('active');
  }, 60_000);

  it('a repeated request (the robot restarted before the reply): the first certificate ends INACTIVE, the second is the open one', async () => {
    const current = await inUse();
    const first = await requestLost('api-request-9102', current);
    const second = await requestLost('api-request-9102', current);
    expect(second).not.toBe(first);
    await poller.idle({ timeoutMs: 30_000 });

    expect(await things.certificateStatus(first)).toBe('INACTIVE');
    expect(await things.standing(THING, second)).toBe('active');
    expect(await things.standing(THING, current)).toBe('active');
    expect((await eventLog.readHead(THING))!.state.certificate?.issued).toEqual({ requestId: 'api-request-9102', certificateId: second });
  }, 60_000);

  it('a re-image in the middle of a rotation: the open rotation\'s certificate ends INACTIVE, the superseded one REVOKED', async () => {
    const superseded = await inUse();
    const open = (await eventLog.readHead(THING))!.state.certificate!.issued!.certificateId; // from the test before
    const reimaged = await provision(SECOND_EXPIRY);
    await poller.idle({ timeoutMs: 30_000 });

    expect(await things.certificateStatus(open)).toBe('INACTIVE');
    expect(await things.certificateStatus(superseded)).toBe('REVOKED');
    expect(await things.standing(THING, reimaged.certificateId)).toBe('active');
    const events = (await eventLog.readEvents(THING)).events.map(({ event }) => event);
    expect(events.slice(-2).map((event) => [event.type, 'reason' in event.data ? event.data.reason : 'claim' in event.data ? event.data.claim : undefined])).toEqual([
      ['CertificateRotationFailed', 'REIMAGED'],
      ['RobotProvisioned', 'reimage'],
    ]);
    expect((await eventLog.readHead(THING))!.state.certificate).toBeUndefined();
  }, 60_000);
});

async function reportFailure(eventId: string, data: Record<string, unknown>) {
  const outcome = await executeRobotCommand(
    eventLog,
    THING,
    { type: 'RecordAgentEvent', event: { eventId, occurredAt: new Date().toISOString(), type: 'CertificateRotationFailed', data } as never },
    { now: () => new Date() },
  );
  expect(outcome.status).toBe('appended');
}

/** A CSR for a fresh key, as the agent makes one for a rotation. */
async function csrFor(thingName: string): Promise<string> {
  const keys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return derCsrBuilder.build(keys, thingName);
}
