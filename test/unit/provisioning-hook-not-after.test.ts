import { describe, expect, it } from 'vitest';
import { certificateNotAfter } from '../../functions/app/provisioning/pre-provisioning-hook.js';
import { CertificateAuthority } from '../../local/certificate-authority.js';

/**
 * The hook reads the admitted certificate's expiry from the PEM IoT hands it (`certificatePem` of the documented hook
 * input), for RobotProvisioned `certificateNotAfter`. The end-to-end path (hook → event → fleet view) is in
 * test/integration/certificate-retirement.test.ts.
 */
describe('certificateNotAfter', () => {
  it('is the certificate’s notAfter, to the second, as ISO 8601', async () => {
    const ca = await CertificateAuthority.create();
    const notAfter = new Date('2030-03-04T05:06:07.000Z');
    const issued = await ca.issueClientCertificate('lekiwi-LK0001', { notAfter });
    expect(certificateNotAfter(issued.certificatePem)).toBe('2030-03-04T05:06:07.000Z');
  });

  it('is undefined for a PEM it cannot read: the expiry stays unknown, the robot is not refused for it', () => {
    expect(certificateNotAfter('-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n')).toBeUndefined();
    expect(certificateNotAfter('')).toBeUndefined();
  });
});
