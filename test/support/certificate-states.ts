import { fold, initialRobotState, type RobotState } from '../../functions/domain/robot-state.js';
import { DomainEvent } from '../../schemas/index.js';

/** Robot states covering each way the cloud learns of a robot's certificate, for certificateView and migration 0005. */
export const CERT_A = 'a'.repeat(64);
export const CERT_B = 'b'.repeat(64);
export const CERT_C = 'c'.repeat(64);
export const PROVISIONED_AT = '2026-01-10T08:00:00.000Z';
export const ROTATED_AT = '2026-06-01T12:00:00.000Z';
export const NOT_AFTER = '2027-06-01T12:00:00.000Z';
export const FAILED_AT = '2026-05-30T09:00:00.000Z';
/** The provisioned certificate's expiry, as the hook read it (RobotProvisioned `certificateNotAfter`). */
export const PROVISIONED_NOT_AFTER = '2036-01-08T08:00:00.000Z';

const robotId = 'lekiwi-LK0042';
let seq = 0;
const event = (type: string, at: string, data: Record<string, unknown>): DomainEvent =>
  DomainEvent.parse({ eventId: `e-${++seq}`, robotId, at, version: 1, type, data });

const provisioned = (certificateId: string, at = PROVISIONED_AT, certificateNotAfter?: string) =>
  event('RobotProvisioned', at, { serial: 'LK0042', model: 'lekiwi', batch: 'B1', certificateId, claim: 'first', ...(certificateNotAfter ? { certificateNotAfter } : {}) });
const rotated = (from: string, to: string, notAfter: string | null = NOT_AFTER) =>
  event('CertificateRotated', ROTATED_AT, { requestId: 'rotation-0001', oldCertificateId: from, newCertificateId: to, notAfter });
const failed = (detail?: string) =>
  event('CertificateRotationFailed', FAILED_AT, { requestId: 'rotation-0000', reason: 'NO_REPLY', ...(detail ? { detail } : {}) });

export function certificateStates(): Record<string, RobotState> {
  const start = initialRobotState(robotId);
  return {
    /** `npm run cert`: the cloud knows nothing of its certificate. */
    unknown: start,
    provisioned: fold(start, [provisioned(CERT_A)]),
    rotated: fold(start, [provisioned(CERT_A), rotated(CERT_A, CERT_B)]),
    rotatedWithoutExpiry: fold(start, [provisioned(CERT_A), rotated(CERT_A, CERT_B, null)]),
    failedThenRotated: fold(start, [provisioned(CERT_A), failed('the cloud did not answer'), rotated(CERT_A, CERT_B)]),
    failedOnly: fold(start, [provisioned(CERT_A), failed()]),
    /** Given its certificate by `npm run cert`, then rotated: the expiry is known, the provisioning is not. */
    rotatedWithoutProvisioning: fold(start, [rotated(CERT_C, CERT_B)]),
    failedWithoutProvisioning: fold(start, [failed('no reply')]),
    /** Provisioned by a hook that read the certificate's expiry; then a rotation that failed keeps it. */
    provisionedWithExpiry: fold(start, [provisioned(CERT_A, PROVISIONED_AT, PROVISIONED_NOT_AFTER)]),
    provisionedWithExpiryThenFailed: fold(start, [provisioned(CERT_A, PROVISIONED_AT, PROVISIONED_NOT_AFTER), failed('no reply')]),
  };
}
