import { describe, expect, it } from 'vitest';
import { handleRotationMessage, InvalidCsrError, type CertificateRegistry } from '../../functions/app/certificate-rotation.js';
import { executeRobotCommand } from '../../functions/app/execute-robot-command.js';
import { RecordingCommandChannel } from '../support/fleet-queries-fake.js';
import { InMemoryEventLog } from '../support/in-memory-event-log.js';

/** The cloud's half of certificate rotation (functions/app/certificate-rotation.ts) on in-memory ports. */

const ROBOT = 'lekiwi-LK0001';
const OTHER = 'lekiwi-LK0002';
const OLD = '1'.repeat(64);
const NEW = '2'.repeat(64);
const THEIRS = '3'.repeat(64);
const CSR = '-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n';

/** Certificates by id: which thing holds each and its status, as IoT's registry would. */
class FakeRegistry implements CertificateRegistry {
  readonly certificates = new Map<string, { thing: string; status: 'ACTIVE' | 'INACTIVE'; attached: boolean }>([
    [OLD, { thing: ROBOT, status: 'ACTIVE', attached: true }],
    [THEIRS, { thing: OTHER, status: 'ACTIVE', attached: true }],
  ]);
  /** The ids the next issues get, in order (each issue signs a new certificate, as IoT does); NEW once they run out. */
  readonly nextIds: string[] = [];
  async issue(thingName: string, csrPem: string) {
    if (!csrPem.includes('MIIB')) throw new InvalidCsrError('not PKCS#10');
    const certificateId = this.nextIds.shift() ?? NEW;
    this.certificates.set(certificateId, { thing: thingName, status: 'ACTIVE', attached: true });
    return { certificateId, certificatePem: '-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n' };
  }
  async standing(thingName: string, certificateId: string) {
    const certificate = this.certificates.get(certificateId);
    if (!certificate || certificate.thing !== thingName || !certificate.attached) return 'not-attached' as const;
    return certificate.status === 'ACTIVE' ? ('active' as const) : ('inactive' as const);
  }
  async retire(_thingName: string, certificateId: string) {
    this.certificates.set(certificateId, { ...this.certificates.get(certificateId)!, status: 'INACTIVE', attached: false });
  }
  async notAfter() {
    return '2036-12-01T00:00:00.000Z';
  }
}

function world() {
  const certificates = new FakeRegistry();
  const replies = new RecordingCommandChannel();
  const eventLog = new InMemoryEventLog();
  const deps = { certificates, replies, eventLog, now: () => new Date('2026-12-01T12:00:00.000Z'), log: () => undefined };
  return { certificates, replies, eventLog, handle: (input: unknown) => handleRotationMessage(deps, input) };
}

const request = (body: Record<string, unknown> = {}) => ({ thingName: ROBOT, message: 'request', requestId: 'rotation-0001', csr: CSR, currentCertificateId: OLD, ...body });
const confirm = (body: Record<string, unknown> = {}) => ({ thingName: ROBOT, message: 'confirm', requestId: 'rotation-0001', certificateId: NEW, previousCertificateId: OLD, ...body });

describe('certificate-rotation function', () => {
  it('issues an active certificate for the robot and keeps the old one active until the confirm', async () => {
    const { handle, replies, certificates } = world();
    expect(await handle(request())).toMatchObject({ kind: 'issued', certificateId: NEW });
    expect(replies.sent).toEqual([{ robotId: ROBOT, request: 'certificate-issued', payload: expect.objectContaining({ requestId: 'rotation-0001', certificateId: NEW }) }]);
    expect(certificates.certificates.get(OLD)?.status).toBe('ACTIVE');
  });

  it('on confirm deactivates the old certificate, appends CertificateRotated once, and answers every repeat the same', async () => {
    const { handle, replies, certificates, eventLog } = world();
    await handle(request());
    expect(await handle(confirm())).toMatchObject({ kind: 'rotated', oldCertificateId: OLD, newCertificateId: NEW });
    expect(certificates.certificates.get(OLD)).toMatchObject({ status: 'INACTIVE', attached: false });
    expect(await handle(confirm())).toMatchObject({ kind: 'rotated' }); // the robot did not hear the first answer
    const { events } = await eventLog.readEvents(ROBOT);
    expect(events.map(({ event }) => event.type)).toEqual(['CertificateIssued', 'CertificateRotated']);
    expect(events[1]!.event.data).toEqual({ requestId: 'rotation-0001', oldCertificateId: OLD, newCertificateId: NEW, notAfter: '2036-12-01T00:00:00.000Z' });
    expect((await eventLog.readHead(ROBOT))?.state.certificate).toMatchObject({ id: NEW, rotatedAt: '2026-12-01T12:00:00.000Z', issued: null });
    expect(replies.sent.filter((reply) => reply.request === 'certificate-rotated')).toHaveLength(2);
  });

  it("never deactivates another robot's certificate, nor the old one before the new one is the robot's", async () => {
    const { handle, certificates, eventLog } = world();
    await handle(request());
    expect(await handle(confirm({ previousCertificateId: THEIRS }))).toMatchObject({ kind: 'rejected', reason: 'CERTIFICATE_NOT_ATTACHED' });
    expect(certificates.certificates.get(THEIRS)?.status).toBe('ACTIVE');
    expect(await handle(confirm({ thingName: OTHER, previousCertificateId: THEIRS }))).toMatchObject({ kind: 'rejected', reason: 'CERTIFICATE_NOT_ATTACHED' });
    expect(await handle(confirm({ certificateId: OLD }))).toMatchObject({ kind: 'rejected', reason: 'SAME_CERTIFICATE' });
    expect(certificates.certificates.get(OLD)?.status).toBe('ACTIVE');
    expect((await eventLog.readEvents(ROBOT)).events.map(({ event }) => event.type)).toEqual(['CertificateIssued']);
  });

  it('records the certificate it issued in the robot\'s log before it replies', async () => {
    const { handle, replies, eventLog } = world();
    let recordedBeforeReply: string[] | undefined;
    const send = replies.send.bind(replies);
    replies.send = async (...args) => {
      recordedBeforeReply = (await eventLog.readEvents(ROBOT)).events.map(({ event }) => event.eventId);
      return send(...args);
    };
    await handle(request());
    expect(recordedBeforeReply).toEqual([`certificate-issued:rotation-0001:${NEW}`]);
    const [issued] = (await eventLog.readEvents(ROBOT)).events;
    expect(issued!.event).toMatchObject({ type: 'CertificateIssued', data: { requestId: 'rotation-0001', certificateId: NEW, notAfter: '2036-12-01T00:00:00.000Z' } });
    expect((await eventLog.readHead(ROBOT))?.state.certificate?.issued).toEqual({ requestId: 'rotation-0001', certificateId: NEW });
  });

  it('a repeated request gets a new certificate and the log names the one it replaces; the in-use one never', async () => {
    const { handle, certificates, eventLog } = world();
    const AGAIN = '4'.repeat(64);
    certificates.nextIds.push(NEW, AGAIN);
    await handle(request());
    expect(await handle(request())).toMatchObject({ kind: 'issued', certificateId: AGAIN }); // the robot restarted in `requested`
    const { events } = await eventLog.readEvents(ROBOT);
    expect(events.map(({ event }) => event.data)).toEqual([
      { requestId: 'rotation-0001', certificateId: NEW, notAfter: '2036-12-01T00:00:00.000Z' },
      { requestId: 'rotation-0001', certificateId: AGAIN, notAfter: '2036-12-01T00:00:00.000Z', replacedCertificateId: NEW },
    ]);
  });

  it('a request the robot already reported failed gets no usable certificate: the one issued is deactivated at once', async () => {
    const { handle, replies, certificates, eventLog } = world();
    await executeRobotCommand(
      eventLog,
      ROBOT,
      {
        type: 'RecordAgentEvent',
        event: { eventId: 'agent-failure-1', occurredAt: '2026-12-01T11:59:00.000Z', type: 'CertificateRotationFailed', data: { requestId: 'rotation-0001', reason: 'NO_REPLY', certificateId: OLD } },
      },
      { now: () => new Date('2026-12-01T11:59:00.000Z') },
    );
    expect(await handle(request())).toMatchObject({ kind: 'rejected', reason: 'REQUEST_ENDED' }); // the Lambda ran late
    expect(certificates.certificates.get(NEW)).toMatchObject({ status: 'INACTIVE', attached: false });
    expect(certificates.certificates.get(OLD)?.status).toBe('ACTIVE');
    expect(replies.sent.map((reply) => reply.payload)).toEqual([{ requestId: 'rotation-0001', rejected: expect.objectContaining({ reason: 'REQUEST_ENDED' }) }]);
    expect((await eventLog.readEvents(ROBOT)).events.map(({ event }) => event.type)).toEqual(['CertificateRotationFailed']);
  });

  it('refuses a request from a certificate that is not the robot\'s, a CSR it cannot sign, and a malformed message, each by name', async () => {
    const { handle, replies } = world();
    expect(await handle(request({ currentCertificateId: THEIRS }))).toMatchObject({ kind: 'rejected', reason: 'CERTIFICATE_NOT_ATTACHED' });
    expect(await handle(request({ csr: '-----BEGIN CERTIFICATE REQUEST-----\nbad\n-----END CERTIFICATE REQUEST-----' }))).toMatchObject({ kind: 'rejected', reason: 'INVALID_CSR' });
    expect(await handle(request({ csr: '-----BEGIN PRIVATE KEY-----' }))).toMatchObject({ kind: 'rejected', reason: 'INVALID_REQUEST', message: expect.stringContaining('csr') });
    expect(await handle({ thingName: ROBOT, message: 'request' })).toMatchObject({ kind: 'dropped' });
    expect(await handle({ thingName: 'not a robot', message: 'request' })).toMatchObject({ kind: 'dropped' });
    expect(replies.sent.map((reply) => (reply.payload as { rejected: { reason: string } }).rejected.reason)).toEqual([
      'CERTIFICATE_NOT_ATTACHED',
      'INVALID_CSR',
      'INVALID_REQUEST',
    ]);
  });
});
