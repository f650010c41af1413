import { describe, expect, it } from 'vitest';
import { certificateView, toRobotView } from '../../../functions/domain/robot-view.js';
import { RobotView } from '../../../schemas/index.js';
import {
  CERT_A,
  CERT_B,
  FAILED_AT,
  NOT_AFTER,
  PROVISIONED_AT,
  PROVISIONED_NOT_AFTER,
  ROTATED_AT,
  certificateStates,
} from '../../support/certificate-states.js';

describe('certificateView: the robot certificate the fleet view shows', () => {
  const states = certificateStates();

  it('is null when the cloud knows no certificate of the robot (`npm run cert`, never rotated)', () => {
    expect(certificateView(states.unknown!)).toBeNull();
    expect(toRobotView(states.unknown!, 0, null).certificate).toBeNull();
  });

  it("shows a provisioned robot's certificate as issued when the hook admitted it, with no known expiry", () => {
    expect(certificateView(states.provisioned!)).toEqual({
      id: CERT_A,
      issuedAt: PROVISIONED_AT,
      notAfter: null,
      rotatedAt: null,
      lastRotationFailure: null,
    });
  });

  it('shows the rotated-to certificate, issued at the rotation, with its expiry', () => {
    expect(certificateView(states.rotated!)).toEqual({
      id: CERT_B,
      issuedAt: ROTATED_AT,
      notAfter: NOT_AFTER,
      rotatedAt: ROTATED_AT,
      lastRotationFailure: null,
    });
    expect(certificateView(states.rotatedWithoutExpiry!)).toMatchObject({ id: CERT_B, notAfter: null, issuedAt: ROTATED_AT });
  });

  it('keeps the newest failed rotation, also after a later success', () => {
    expect(certificateView(states.failedThenRotated!)).toMatchObject({
      id: CERT_B,
      lastRotationFailure: { reason: 'NO_REPLY', detail: 'the cloud did not answer', at: FAILED_AT },
    });
    expect(certificateView(states.failedOnly!)).toEqual({
      id: CERT_A,
      issuedAt: PROVISIONED_AT,
      notAfter: null,
      rotatedAt: null,
      lastRotationFailure: { reason: 'NO_REPLY', detail: null, at: FAILED_AT },
    });
  });

  it('knows no issue time for a failed rotation of a certificate it never saw issued', () => {
    expect(certificateView(states.failedWithoutProvisioning!)).toEqual({
      id: null,
      issuedAt: null,
      notAfter: null,
      rotatedAt: null,
      lastRotationFailure: { reason: 'NO_REPLY', detail: 'no reply', at: FAILED_AT },
    });
    expect(certificateView(states.rotatedWithoutProvisioning!)).toMatchObject({ id: CERT_B, issuedAt: ROTATED_AT, notAfter: NOT_AFTER });
  });

  it('is part of every RobotView the API schema accepts', () => {
    for (const [name, state] of Object.entries(states)) {
      const view = toRobotView(state, 3, null);
      expect(RobotView.parse(view), name).toEqual(view);
      expect(view.certificate, name).toEqual(certificateView(state));
    }
  });
});

describe('certificateView: the expiry recorded at provisioning (RobotProvisioned certificateNotAfter)', () => {
  const states = certificateStates();

  it('shows the provisioned certificate with the expiry the hook read, and keeps it through a failed rotation', () => {
    expect(certificateView(states.provisionedWithExpiry!)).toEqual({
      id: CERT_A,
      issuedAt: PROVISIONED_AT,
      notAfter: PROVISIONED_NOT_AFTER,
      rotatedAt: null,
      lastRotationFailure: null,
    });
    expect(certificateView(states.provisionedWithExpiryThenFailed!)).toMatchObject({ id: CERT_A, notAfter: PROVISIONED_NOT_AFTER });
  });

  it('an older RobotProvisioned without the field still reads, with the expiry unknown', () => {
    expect(certificateView(states.provisioned!)?.notAfter).toBeNull();
  });
});
