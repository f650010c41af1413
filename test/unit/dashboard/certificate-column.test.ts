import { describe, expect, it } from 'vitest';
import {
  CERTIFICATE_EXPIRING_WITHIN_MS,
  certificateExpiry,
  certificateSummary,
  formatDays,
  formatExpiry,
  type RobotCertificate,
} from '../../../dashboard/src/views/certificate-model.js';
import { deriveRows, filterAndSort, FLEET_COLUMNS } from '../../../dashboard/src/views/fleet-model.js';
import { robotView } from './fixtures.js';

const DAY = 86_400_000;
const NOW = Date.parse('2026-12-01T10:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();
const certificate = (overrides: Partial<RobotCertificate> = {}): RobotCertificate => ({
  id: 'a'.repeat(64),
  issuedAt: iso(NOW - 120 * DAY),
  notAfter: iso(NOW + 245 * DAY),
  rotatedAt: iso(NOW - 120 * DAY),
  lastRotationFailure: null,
  ...overrides,
});

describe('the fleet view of certificate ages', () => {
  it('is amber from 30 days before expiry, red from the instant of expiry, grey when the expiry is unknown', () => {
    const expiringAt = (notAfter: number) => certificateExpiry(certificate({ notAfter: iso(notAfter) }), NOW);
    expect(expiringAt(NOW + CERTIFICATE_EXPIRING_WITHIN_MS + 1)).toBe('ok');
    expect(expiringAt(NOW + CERTIFICATE_EXPIRING_WITHIN_MS)).toBe('expiring');
    expect(expiringAt(NOW + 1)).toBe('expiring');
    expect(expiringAt(NOW)).toBe('expired');
    expect(expiringAt(NOW - 3 * DAY)).toBe('expired');
    expect(certificateExpiry(certificate({ notAfter: null }), NOW)).toBe('unknown');
    expect(certificateExpiry(null, NOW)).toBe('unknown');
  });

  it('says the age and the time to expiry in whole days, and finer under a day', () => {
    expect(formatDays(245 * DAY + 5 * 3_600_000)).toBe('245 d');
    expect(formatDays(5 * 3_600_000)).toBe('5 h');
    expect(formatExpiry(certificate(), NOW)).toBe('expires in 245 d');
    expect(formatExpiry(certificate({ notAfter: iso(NOW - 3 * DAY - 1000) }), NOW)).toBe('expired 3 d ago');
    expect(formatExpiry(certificate({ notAfter: null }), NOW)).toBe('expiry unknown');
    expect(certificateSummary(certificate(), NOW)).toEqual({ age: '120 d old', expiry: 'expires in 245 d', tone: 'ok', failure: null });
    // Provisioned by `npm run cert` and rotated with no readable expiry: no age, no expiry, nothing made up.
    expect(certificateSummary(certificate({ issuedAt: null, notAfter: null }), NOW)).toEqual({
      age: null,
      expiry: 'expiry unknown',
      tone: 'unknown',
      failure: null,
    });
    expect(certificateSummary(null, NOW)).toBeNull();
  });

  it('flags a failed rotation until a rotation succeeds after it', () => {
    const failure = { reason: 'NO_REPLY', detail: null, at: iso(NOW - DAY) };
    expect(certificateSummary(certificate({ lastRotationFailure: failure }), NOW)?.failure).toBe('rotation failed: NO_REPLY');
    expect(certificateSummary(certificate({ lastRotationFailure: failure, rotatedAt: iso(NOW - 1000) }), NOW)?.failure).toBeNull();
    expect(certificateSummary(certificate({ lastRotationFailure: failure, rotatedAt: null }), NOW)?.failure).toBe('rotation failed: NO_REPLY');
  });

  it('sorts the Certificate column by expiry, soonest first ascending, robots without a known expiry last both ways', () => {
    expect(FLEET_COLUMNS).toContain('certificate');
    const rows = deriveRows(
      new Map(
        [
          robotView('lekiwi-A', { certificate: certificate({ notAfter: iso(NOW + 200 * DAY) }) }),
          robotView('lekiwi-B', { certificate: null }),
          robotView('lekiwi-C', { certificate: certificate({ notAfter: iso(NOW - DAY) }) }),
          robotView('lekiwi-D', { certificate: certificate({ notAfter: null }) }),
          robotView('lekiwi-E', { certificate: certificate({ notAfter: iso(NOW + 10 * DAY) }) }),
        ].map((view) => [view.robotId, view]),
      ),
      NOW,
      new Map(),
    );
    const order = (direction: 'asc' | 'desc') => filterAndSort(rows, {}, { column: 'certificate', direction }).map((row) => row.id);
    expect(order('asc')).toEqual(['lekiwi-C', 'lekiwi-E', 'lekiwi-A', 'lekiwi-B', 'lekiwi-D']);
    expect(order('desc')).toEqual(['lekiwi-A', 'lekiwi-E', 'lekiwi-C', 'lekiwi-B', 'lekiwi-D']);
  });
});
