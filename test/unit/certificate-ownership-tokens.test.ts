import { describe, expect, it } from 'vitest';
import { CertificateOwnershipTokens, OWNERSHIP_TOKEN_TTL_MS } from '../../local/iot-broker/create-certificate-from-csr.js';

describe('certificate ownership tokens', () => {
  it('redeem for their certificate once, within the hour', () => {
    let now = 1_000_000;
    const tokens = new CertificateOwnershipTokens(() => now);
    const a = tokens.issue('cert-a');
    const b = tokens.issue('cert-b');
    expect(a).not.toBe(b);
    expect(tokens.redeem(a)).toBe('cert-a');
    expect(tokens.redeem(a)).toBeUndefined(); // used
    now += OWNERSHIP_TOKEN_TTL_MS;
    expect(tokens.redeem(b)).toBeUndefined(); // expired
    expect(tokens.redeem('made-up')).toBeUndefined();
  });
});
