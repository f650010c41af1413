import type { DynamoDBRecord } from 'aws-lambda';
import { describe, expect, it } from 'vitest';
import { toEventItem, toHeadItem } from '../../functions/adapters/event-log-items.js';
import { retireCertificatesInStreamBatch } from '../../functions/adapters/stream-consumers.js';
import { executeRobotCommand } from '../../functions/app/execute-robot-command.js';
import { retireCertificate, retirementOf, type RetiringRegistry } from '../../functions/app/retire-certificates.js';
import { DomainEvent, type RecordedEvent } from '../../schemas/index.js';
import { matchesAnyFilter, RETIREMENT_RECORD_PATTERNS } from '../../schemas/stream-filters.js';
import { InMemoryEventLog } from '../support/in-memory-event-log.js';
import { StreamRecords } from '../support/stream-records.js';

/**
 * The certificate retirer's use case (functions/app/retire-certificates.ts): which events retire which certificate,
 * how (revoke or deactivate), never the one in use, and how the stream consumer reports a registry failure.
 */
const ROBOT = 'lekiwi-LK0007';
const OLD = 'a'.repeat(64);
const NEW = 'b'.repeat(64);
const ABANDONED = 'c'.repeat(64);
let seq = 0;

function recorded(type: string, data: Record<string, unknown>, robotId = ROBOT): RecordedEvent {
  seq += 1;
  const at = new Date(Date.UTC(2026, 10, 1, 0, 0, seq)).toISOString();
  return { seq, recordedAt: at, event: DomainEvent.parse({ eventId: `e-${seq}`, robotId, at, version: 1, type, data }) };
}
const provisioned = (claim: 'first' | 'reimage', certificateId: string, supersededCertificateId?: string) =>
  recorded('RobotProvisioned', { serial: 'LK0007', model: 'lekiwi', batch: 'B1', certificateId, claim, ...(supersededCertificateId ? { supersededCertificateId } : {}) });
const issued = (data: Record<string, unknown>) => recorded('CertificateIssued', { requestId: 'api-request-0001', notAfter: null, ...data });
const rotationFailed = (data: Record<string, unknown>) => recorded('CertificateRotationFailed', { requestId: 'api-request-0001', reason: 'NEW_CERTIFICATE_REFUSED', ...data });

/** A registry that remembers what it was asked, and can fail. */
function fakeRegistry(failOn?: string) {
  const calls: string[] = [];
  const registry: RetiringRegistry = {
    revoke: async (thing, id) => {
      if (id === failOn) throw new Error('ThrottlingException');
      calls.push(`revoke ${thing} ${id[0]}`);
    },
    retire: async (thing, id) => {
      if (id === failOn) throw new Error('ThrottlingException');
      calls.push(`retire ${thing} ${id[0]}`);
    },
  };
  return { registry, calls };
}

describe('retirementOf', () => {
  it("a re-image revokes the superseded certificate; a first claim retires nothing", () => {
    expect(retirementOf(provisioned('reimage', NEW, OLD))).toMatchObject({ kind: 'revoke', robotId: ROBOT, certificateId: OLD });
    expect(retirementOf(provisioned('first', NEW))).toBeUndefined();
  });

  it('an abandoned rotation deactivates the abandoned certificate; a failure that names none retires nothing', () => {
    expect(retirementOf(rotationFailed({ certificateId: OLD, abandonedCertificateId: ABANDONED }))).toMatchObject({
      kind: 'deactivate',
      certificateId: ABANDONED,
      inUse: OLD,
    });
    expect(retirementOf(rotationFailed({ certificateId: OLD }))).toBeUndefined();
    expect(retirementOf(recorded('RobotRegistered', { model: 'lekiwi' }))).toBeUndefined();
  });

  it('an issuance that replaces an open rotation deactivates the replaced certificate; a first issuance retires nothing', () => {
    expect(retirementOf(issued({ certificateId: NEW, replacedCertificateId: ABANDONED }))).toMatchObject({ kind: 'deactivate', certificateId: ABANDONED });
    expect(retirementOf(issued({ certificateId: NEW }))).toBeUndefined();
  });
});

describe('a certificate the robot never heard of (its reply lost, or a re-image mid-rotation)', () => {
  const now = { now: () => new Date('2026-11-01T00:10:00.000Z') };
  const issue = (requestId: string, certificateId: string) =>
    ({ type: 'RecordCertificateIssuance', at: '2026-11-01T00:05:00.000Z', requestId, certificateId, currentCertificateId: OLD, notAfter: null }) as const;
  async function provisionedRobot() {
    const eventLog = new InMemoryEventLog();
    await executeRobotCommand(eventLog, ROBOT, { type: 'RecordProvisioning', at: '2026-11-01T00:00:00.000Z', serial: 'LK0007', batch: 'B1', certificateId: OLD, claim: 'first' }, now);
    return eventLog;
  }
  /** Every retirement the robot's log asks for, in order, as the stream consumer would act on them. */
  async function retireAll(eventLog: InMemoryEventLog, registry: RetiringRegistry) {
    const outcomes: string[] = [];
    for (const event of (await eventLog.readEvents(ROBOT)).events) {
      const retirement = retirementOf(event);
      if (retirement) outcomes.push(`${await retireCertificate({ certificates: registry, eventLog }, retirement)} ${retirement.certificateId[0]}`);
    }
    return outcomes;
  }

  it('the agent\'s NO_REPLY failure without a certificate id deactivates the certificate issued for that request, not the one in use', async () => {
    const eventLog = await provisionedRobot();
    await executeRobotCommand(eventLog, ROBOT, issue('api-request-0001', NEW), now);
    await executeRobotCommand(
      eventLog,
      ROBOT,
      { type: 'RecordAgentEvent', event: { eventId: 'agent-1', occurredAt: '2026-11-01T00:06:00.000Z', type: 'CertificateRotationFailed', data: { requestId: 'api-request-0001', reason: 'NO_REPLY', certificateId: OLD } } },
      now,
    );
    const { registry, calls } = fakeRegistry();
    expect(await retireAll(eventLog, registry)).toEqual(['deactivated b']);
    expect(calls).toEqual([`retire ${ROBOT} b`]);
  });

  it('a re-image mid-rotation revokes the superseded certificate and deactivates the open rotation\'s', async () => {
    const eventLog = await provisionedRobot();
    await executeRobotCommand(eventLog, ROBOT, issue('api-request-0001', NEW), now);
    await executeRobotCommand(
      eventLog,
      ROBOT,
      { type: 'RecordProvisioning', at: '2026-11-01T00:07:00.000Z', serial: 'LK0007', batch: 'B1', certificateId: 'd'.repeat(64), claim: 'reimage', supersededCertificateId: OLD },
      now,
    );
    const { registry, calls } = fakeRegistry();
    expect(await retireAll(eventLog, registry)).toEqual(['deactivated b', 'revoked a']);
    expect(calls).toEqual([`retire ${ROBOT} b`, `revoke ${ROBOT} a`]);
  });

  it('a repeated request deactivates the certificate its first delivery got; the certificate in use is kept', async () => {
    const eventLog = await provisionedRobot();
    await executeRobotCommand(eventLog, ROBOT, issue('api-request-0001', NEW), now);
    await executeRobotCommand(eventLog, ROBOT, issue('api-request-0001', ABANDONED), now);
    const { registry, calls } = fakeRegistry();
    expect(await retireAll(eventLog, registry)).toEqual(['deactivated b']);
    // Forged or not, a replaced id that is the robot's current certificate is never touched.
    expect(await retireCertificate({ certificates: registry, eventLog }, retirementOf(issued({ certificateId: NEW, replacedCertificateId: OLD }))!)).toBe('kept-in-use');
    expect(calls).toEqual([`retire ${ROBOT} b`]);
  });
});

describe('retireCertificate', () => {
  it('revokes a superseded certificate and deactivates an abandoned one, on the robot’s own thing', async () => {
    const { registry, calls } = fakeRegistry();
    const eventLog = new InMemoryEventLog();
    expect(await retireCertificate({ certificates: registry, eventLog }, retirementOf(provisioned('reimage', NEW, OLD))!)).toBe('revoked');
    expect(await retireCertificate({ certificates: registry, eventLog }, retirementOf(rotationFailed({ certificateId: OLD, abandonedCertificateId: ABANDONED }))!)).toBe(
      'deactivated',
    );
    expect(calls).toEqual([`revoke ${ROBOT} a`, `retire ${ROBOT} c`]);
  });

  it('keeps the certificate the robot says it uses, and the one its state says it uses', async () => {
    const { registry, calls } = fakeRegistry();
    const eventLog = new InMemoryEventLog();
    // The robot's state: provisioned with NEW.
    await executeRobotCommand(eventLog, ROBOT, { type: 'RecordProvisioning', at: '2026-11-01T00:00:00.000Z', serial: 'LK0007', batch: 'B1', certificateId: NEW, claim: 'first' }, { now: () => new Date() });
    const deps = { certificates: registry, eventLog };
    expect(await retireCertificate(deps, retirementOf(rotationFailed({ certificateId: OLD, abandonedCertificateId: OLD }))!)).toBe('kept-in-use');
    expect(await retireCertificate(deps, retirementOf(rotationFailed({ abandonedCertificateId: NEW }))!)).toBe('kept-in-use');
    expect(calls).toEqual([]);
  });
});

describe('the stream consumer', () => {
  const stream = new StreamRecords();
  const eventRecord = (event: RecordedEvent): DynamoDBRecord => stream.record({ eventName: 'INSERT', item: toEventItem(event) } as never);

  it('acts on each retirement in order and reports the first one the registry fails on; the rest comes again', async () => {
    const { registry, calls } = fakeRegistry(ABANDONED);
    const records = [
      eventRecord(provisioned('reimage', NEW, OLD)),
      eventRecord(rotationFailed({ certificateId: NEW, abandonedCertificateId: ABANDONED })),
      eventRecord(provisioned('reimage', 'd'.repeat(64), NEW)),
    ];
    const response = await retireCertificatesInStreamBatch(records, { certificates: registry, eventLog: new InMemoryEventLog() });
    expect(calls).toEqual([`revoke ${ROBOT} a`]);
    expect(response).toEqual({ batchItemFailures: [{ itemIdentifier: records[1]!.dynamodb!.SequenceNumber }] });
  });

  it('skips a malformed record and records that retire nothing', async () => {
    const { registry, calls } = fakeRegistry();
    const malformed = eventRecord(provisioned('reimage', NEW, OLD));
    malformed.dynamodb!.NewImage!.type = { S: 'NoSuchEvent' };
    const response = await retireCertificatesInStreamBatch([malformed, eventRecord(provisioned('first', NEW)), eventRecord(provisioned('reimage', NEW, OLD))], {
      certificates: registry,
      eventLog: new InMemoryEventLog(),
    });
    expect(response).toEqual({ batchItemFailures: [] });
    expect(calls).toEqual([`revoke ${ROBOT} a`]);
  });

  it("the mapping's filter lets through exactly the three event types, and no head or other event", () => {
    const pass = (record: DynamoDBRecord) => matchesAnyFilter(record, RETIREMENT_RECORD_PATTERNS);
    expect(pass(eventRecord(provisioned('reimage', NEW, OLD)))).toBe(true);
    expect(pass(eventRecord(rotationFailed({ certificateId: OLD })))).toBe(true);
    expect(pass(eventRecord(issued({ certificateId: NEW })))).toBe(true);
    expect(pass(eventRecord(recorded('RobotRegistered', { model: 'lekiwi' })))).toBe(false);
    const head = stream.record({ eventName: 'MODIFY', item: toHeadItem({ robotId: ROBOT, state: {} as never, lastSeq: 1, revision: 1, telemetry: null, outbox: null } as never, false) } as never);
    expect(pass(head)).toBe(false);
  });
});
