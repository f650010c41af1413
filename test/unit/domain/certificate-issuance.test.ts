import { describe, expect, it } from 'vitest';
import { decide, type RobotCommand } from '../../../functions/domain/robot-decider.js';
import { fold, initialRobotState, type RobotState } from '../../../functions/domain/robot-state.js';
import { AgentEvent, DomainEvent } from '../../../schemas/index.js';

/**
 * The robot's decider and state for the certificates a rotation issues (issue 11, item 4): every one the cloud issued
 * is the open rotation's until the rotation ends, and the event that ends it names the certificate when the robot
 * will not use it, so none stays ACTIVE unknown to the robot (functions/app/retire-certificates.ts acts on the names).
 */
const robotId = 'lekiwi-LK0042';
const CURRENT = '1'.repeat(64);
const ISSUED = '2'.repeat(64);
const AGAIN = '3'.repeat(64);
const REIMAGED = '4'.repeat(64);
const at = (s: number) => new Date(Date.parse('2026-12-01T10:00:00.000Z') + s * 1000).toISOString();

const issuance = (requestId: string, certificateId: string, s = 0, currentCertificateId = CURRENT): RobotCommand => ({
  type: 'RecordCertificateIssuance',
  at: at(s),
  requestId,
  certificateId,
  currentCertificateId,
  notAfter: '2027-12-01T00:00:00.000Z',
});
const failure = (requestId: string, data: Record<string, unknown> = {}, s = 30): RobotCommand => ({
  type: 'RecordAgentEvent',
  event: AgentEvent.parse({ eventId: `agent-${requestId}-${s}`, occurredAt: at(s), type: 'CertificateRotationFailed', data: { requestId, reason: 'NO_REPLY', certificateId: CURRENT, ...data } }),
});
const provisioned: RobotCommand = { type: 'RecordProvisioning', at: at(0), serial: 'LK0042', batch: 'B1', certificateId: CURRENT, claim: 'first' };
const reimage = (s: number): RobotCommand => ({ type: 'RecordProvisioning', at: at(s), serial: 'LK0042', batch: 'B1', certificateId: REIMAGED, claim: 'reimage', supersededCertificateId: CURRENT });

/** Decides, checks every event against the schema, folds. */
function run(commands: readonly RobotCommand[], from: RobotState = fold(initialRobotState(robotId), decide(initialRobotState(robotId), provisioned, { known: false }))) {
  let state = from;
  const events: DomainEvent[] = [];
  for (const command of commands) {
    const decided = decide(state, command, { known: true });
    for (const event of decided) expect(DomainEvent.parse(event)).toEqual(event);
    events.push(...decided);
    state = fold(state, decided);
  }
  return { state, events };
}

describe('certificate issuance in the robot decider', () => {
  it('records the issued certificate once, and keeps only the open rotation\'s id in the state', () => {
    const { state, events } = run([issuance('rotation-0001', ISSUED), issuance('rotation-0001', ISSUED, 1)]);
    expect(events).toEqual([
      {
        eventId: `certificate-issued:rotation-0001:${ISSUED}`,
        robotId,
        at: at(0),
        version: 1,
        type: 'CertificateIssued',
        data: { requestId: 'rotation-0001', certificateId: ISSUED, notAfter: '2027-12-01T00:00:00.000Z' },
      },
    ]);
    expect(state.certificate).toMatchObject({ id: CURRENT, issued: { requestId: 'rotation-0001', certificateId: ISSUED } });
  });

  it('a NO_REPLY failure without a certificate id names the certificate issued for that request, and closes the rotation', () => {
    const { state, events } = run([issuance('rotation-0001', ISSUED), failure('rotation-0001')]);
    expect(events[1]).toMatchObject({
      type: 'CertificateRotationFailed',
      data: { requestId: 'rotation-0001', reason: 'NO_REPLY', certificateId: CURRENT, abandonedCertificateId: ISSUED },
    });
    expect(state.certificate).toMatchObject({ id: CURRENT, issued: null, lastFailure: { requestId: 'rotation-0001', reason: 'NO_REPLY' } });
  });

  it('a failure of another request, one naming its own certificate, or one staying on the issued certificate is recorded as it came', () => {
    const other = run([issuance('rotation-0002', ISSUED), failure('rotation-0001')]);
    expect(other.events[1]!.data).toEqual({ requestId: 'rotation-0001', reason: 'NO_REPLY', certificateId: CURRENT });
    expect(other.state.certificate?.issued).toEqual({ requestId: 'rotation-0002', certificateId: ISSUED });

    const named = run([issuance('rotation-0001', ISSUED), failure('rotation-0001', { reason: 'NEW_CERTIFICATE_REFUSED', abandonedCertificateId: ISSUED })]);
    expect(named.events[1]!.data).toMatchObject({ abandonedCertificateId: ISSUED });

    // The robot says it goes on with the issued certificate (it connected, its confirm was lost): never named.
    const inUse = run([issuance('rotation-0001', ISSUED), failure('rotation-0001', { certificateId: ISSUED })]);
    expect(inUse.events[1]!.data).not.toHaveProperty('abandonedCertificateId');
  });

  it('a second issuance replaces the open one and names it, unless the robot now uses it', () => {
    const repeat = run([issuance('rotation-0001', ISSUED), issuance('rotation-0001', AGAIN, 5)]);
    expect(repeat.events[1]).toMatchObject({ eventId: `certificate-issued:rotation-0001:${AGAIN}`, data: { certificateId: AGAIN, replacedCertificateId: ISSUED } });
    expect(repeat.state.certificate?.issued).toEqual({ requestId: 'rotation-0001', certificateId: AGAIN });

    const connected = run([issuance('rotation-0001', ISSUED), issuance('rotation-0002', AGAIN, 5, ISSUED)]);
    expect(connected.events[1]!.data).not.toHaveProperty('replacedCertificateId');
  });

  it('an issuance for a request the robot already reported failed opens nothing', () => {
    const { state, events } = run([failure('rotation-0001', {}, 1), issuance('rotation-0001', ISSUED, 2)]);
    expect(events.map((event) => event.type)).toEqual(['CertificateRotationFailed']);
    expect(state.certificate?.issued).toBeUndefined();
  });

  it('a confirm closes the rotation; a later failure of it names nothing', () => {
    const { state, events } = run([
      issuance('rotation-0001', ISSUED),
      { type: 'RecordCertificateRotation', at: at(10), requestId: 'rotation-0001', oldCertificateId: CURRENT, newCertificateId: ISSUED, notAfter: null },
      failure('rotation-0001', { certificateId: ISSUED }),
    ]);
    expect(events.map((event) => event.type)).toEqual(['CertificateIssued', 'CertificateRotated', 'CertificateRotationFailed']);
    expect(events[2]!.data).not.toHaveProperty('abandonedCertificateId');
    expect(state.certificate).toMatchObject({ id: ISSUED, issued: null });
  });

  it('a re-image during an open rotation records it failed (REIMAGED) naming its certificate, before RobotProvisioned', () => {
    const { state, events } = run([issuance('rotation-0001', ISSUED), reimage(20)]);
    expect(events.map((event) => [event.type, event.eventId])).toEqual([
      ['CertificateIssued', `certificate-issued:rotation-0001:${ISSUED}`],
      ['CertificateRotationFailed', 'rotation-abandoned:rotation-0001:reimage'],
      ['RobotProvisioned', `provisioned:${REIMAGED}`],
    ]);
    expect(events[1]!.data).toMatchObject({ requestId: 'rotation-0001', reason: 'REIMAGED', abandonedCertificateId: ISSUED });
    expect(state.certificate).toBeUndefined();
    expect(state.provisioning?.certificateId).toBe(REIMAGED);
    // Nothing open: a re-image without a rotation in flight records only RobotProvisioned.
    expect(run([reimage(20)]).events.map((event) => event.type)).toEqual(['RobotProvisioned']);
  });
});
