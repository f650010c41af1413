import type { RobotView } from '../../../schemas/index.js';
import { formatDuration, parseTime } from './format.js';

/**
 * The fleet's certificate ages (issue 11, item 4), pure: what the Certificate cell and the robot page say of a robot's
 * certificate at a given "now", and the value the column sorts by.
 *
 * Invariants:
 * - `expired` from the instant `notAfter` is reached; `expiring` within CERTIFICATE_EXPIRING_WITHIN_MS before it;
 *   `unknown` when the cloud does not know the expiry (a certificate it never rotated: RobotView.certificate says why);
 * - the column sorts by expiry, soonest first ascending; robots without a known expiry sort last both ways.
 */

export type RobotCertificate = NonNullable<RobotView['certificate']>;

/** Amber from 30 days before expiry: time enough to find a robot that is off and rotate it. */
export const CERTIFICATE_EXPIRING_WITHIN_MS = 30 * 86_400_000;

export type CertificateExpiry = 'ok' | 'expiring' | 'expired' | 'unknown';

/** The class a tone is shown with: amber badge within 30 days, red badge past expiry, grey when unknown. */
export const CERTIFICATE_TONE_CLASS: Record<CertificateExpiry, string> = {
  ok: '',
  expiring: 'badge sev-warning',
  expired: 'badge sev-critical',
  unknown: 'muted',
};

export function certificateExpiry(certificate: RobotCertificate | null, now: number): CertificateExpiry {
  const notAfter = parseTime(certificate?.notAfter);
  if (notAfter === null) return 'unknown';
  if (now >= notAfter) return 'expired';
  return notAfter - now <= CERTIFICATE_EXPIRING_WITHIN_MS ? 'expiring' : 'ok';
}

/** "45 min", "5 h", "12 d": whole days from a day on, the finer formatDuration below. */
export function formatDays(ms: number): string {
  const days = Math.floor(Math.max(0, ms) / 86_400_000);
  return days >= 1 ? `${days} d` : formatDuration(ms);
}

/** How old the certificate is now (ms), counted from its issue; null when the cloud does not know when. */
export function certificateAgeMs(certificate: RobotCertificate | null, now: number): number | null {
  const issued = parseTime(certificate?.issuedAt);
  return issued === null ? null : Math.max(0, now - issued);
}

/** "expires in 12 d", "expired 3 d ago", "expiry unknown". */
export function formatExpiry(certificate: RobotCertificate | null, now: number): string {
  const notAfter = parseTime(certificate?.notAfter);
  if (notAfter === null) return 'expiry unknown';
  return now >= notAfter ? `expired ${formatDays(now - notAfter)} ago` : `expires in ${formatDays(notAfter - now)}`;
}

/** What a cell shows: the age ("120 d old", or null) and the expiry with its tone. */
export interface CertificateSummary {
  readonly age: string | null;
  readonly expiry: string;
  readonly tone: CertificateExpiry;
  /** The newest failed rotation, when none succeeded after it ("rotation failed: NO_REPLY"), else null. */
  readonly failure: string | null;
}

export function certificateSummary(certificate: RobotCertificate | null, now: number): CertificateSummary | null {
  if (!certificate) return null;
  const age = certificateAgeMs(certificate, now);
  return {
    age: age === null ? null : `${formatDays(age)} old`,
    expiry: formatExpiry(certificate, now),
    tone: certificateExpiry(certificate, now),
    failure: unresolvedFailure(certificate),
  };
}

function unresolvedFailure(certificate: RobotCertificate): string | null {
  const failure = certificate.lastRotationFailure;
  if (!failure) return null;
  const rotated = parseTime(certificate.rotatedAt);
  const failed = parseTime(failure.at);
  if (rotated !== null && failed !== null && rotated >= failed) return null;
  return `rotation failed: ${failure.reason}`;
}

/** The Certificate column's sort value: the expiry (epoch ms), undefined when unknown (sorted last). */
export function certificateSortValue(view: RobotView): number | undefined {
  return parseTime(view.certificate?.notAfter) ?? undefined;
}
