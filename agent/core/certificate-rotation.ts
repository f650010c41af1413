/**
 * Certificate rotation with no gap (issue 11, item 4), as a pure state machine. The driver (agent/certificate-rotation.ts)
 * feeds it what happened — a trigger, the new key made, the cloud's reply, the new certificate connected or refused, a
 * timeout — and it answers with the record to persist (if it changed) and the actions to take. It reads no file, opens
 * no socket and keeps no timer; time comes in as data.
 *
 *   idle ──trigger──▶ (driver makes key + CSR) ──key-ready──▶ requested ──issued──▶ issued ──new-connected──▶
 *   confirming ──rotated──▶ idle (on the new certificate)
 *
 * and from `requested` (rejected, no reply) or `issued` (the new certificate refused within the connect timeout) back
 * to idle on the OLD certificate, reporting CertificateRotationFailed with a named reason.
 *
 * INVARIANTS
 * - The robot is always connected with a certificate the cloud holds active: the old one stays `active` in the record
 *   (and in use) until the new one has connected; only then does the record switch (`active` = new, `confirming`), and
 *   only after that does the robot ask the cloud to deactivate the old one. A restart at any step resumes: `requested`
 *   sends the request again, `issued` connects with the stored new certificate (the old one is still active),
 *   `confirming` starts on the new one and confirms again.
 * - One rotation at a time: a trigger while one is pending is ignored (the pending one's requestId stands).
 * - Every failure leaves `pending` empty, `active` unchanged, and reports exactly one CertificateRotationFailed; one
 *   after the cloud issued the new certificate names it (`abandonedCertificateId`) for the cloud to deactivate.
 * - No private key is in the record or in any action's payload: keys are files, named by path.
 */

export const ROTATION_STEPS = ['requested', 'issued', 'confirming'] as const;
export type RotationStep = (typeof ROTATION_STEPS)[number];
export type RotationTrigger = 'expiry' | 'command' | 'resume';

/** The certificate and key the agent connects with; null in the record: the config's certificateFile/privateKeyFile. */
export interface Credentials {
  readonly certificateId: string;
  readonly certificateFile: string;
  readonly privateKeyFile: string;
}

interface PendingBase {
  readonly requestId: string;
  readonly trigger: RotationTrigger;
  /** ms since the epoch (the robot's clock). */
  readonly startedAt: number;
  /** The certificate in use when the rotation began: the one the cloud deactivates on confirm. */
  readonly previousCertificateId: string;
  /** The new key's file (0600), made for this rotation. */
  readonly keyFile: string;
}

export type PendingRotation =
  | (PendingBase & { readonly step: 'requested'; readonly csrPem: string })
  | (PendingBase & { readonly step: 'issued'; readonly certificateId: string; readonly certificateFile: string })
  | (PendingBase & { readonly step: 'confirming'; readonly certificateId: string; readonly certificateFile: string });

export interface RotationRecord {
  readonly active: Credentials | null;
  readonly pending: PendingRotation | null;
}

export const NO_ROTATION: RotationRecord = Object.freeze({ active: null, pending: null });

export type RotationEvent =
  | { readonly type: 'trigger'; readonly requestId: string; readonly trigger: RotationTrigger }
  | { readonly type: 'key-ready'; readonly requestId: string; readonly trigger: RotationTrigger; readonly keyFile: string; readonly csrPem: string; readonly previousCertificateId: string; readonly at: number }
  | { readonly type: 'resume' }
  | { readonly type: 'issued'; readonly requestId: string; readonly certificateId: string; readonly certificateFile: string }
  | { readonly type: 'rejected'; readonly requestId: string; readonly reason: string; readonly message: string }
  | { readonly type: 'reply-timeout'; readonly requestId: string }
  | { readonly type: 'new-connected'; readonly requestId: string }
  | { readonly type: 'new-refused'; readonly requestId: string; readonly detail: string }
  | { readonly type: 'rotated'; readonly requestId: string }
  | { readonly type: 'confirm-rejected'; readonly requestId: string; readonly reason: string; readonly message: string }
  | { readonly type: 'failed'; readonly requestId: string; readonly reason: 'STORAGE_FAILED' | 'CERTIFICATE_MISMATCH'; readonly detail: string };

export type RotationAction =
  /** Make a new key (0600) and its CSR (CN = thing name), then feed `key-ready`. */
  | { readonly type: 'generate-key'; readonly requestId: string; readonly trigger: RotationTrigger }
  | { readonly type: 'publish-request'; readonly requestId: string; readonly csrPem: string; readonly currentCertificateId: string }
  /** Connect with these credentials within the connect timeout (same client id: the broker hands it over). */
  | { readonly type: 'connect-new'; readonly requestId: string; readonly credentials: Credentials }
  | { readonly type: 'publish-confirm'; readonly requestId: string; readonly certificateId: string; readonly previousCertificateId: string }
  /**
   * Report CertificateRotationFailed. `abandonedCertificateId`: the new certificate the cloud issued that the robot
   * will never use (its files are discarded): the cloud deactivates it, so no extra active certificate is left.
   */
  | {
      readonly type: 'report-failure';
      readonly requestId: string;
      readonly reason: string;
      readonly detail: string;
      readonly certificateId: string;
      readonly abandonedCertificateId?: string;
    }
  /** Delete these files (a rotation's leftovers); never the files in use. */
  | { readonly type: 'discard'; readonly files: readonly string[] }
  /** Delete the rotation folder's files that neither `active` nor `pending` names (the previous pair, leftovers). */
  | { readonly type: 'prune' }
  | { readonly type: 'ignore'; readonly why: string };

export interface Transition {
  /** The record to persist BEFORE acting, when it changed. */
  readonly record?: RotationRecord;
  readonly actions: readonly RotationAction[];
}

/** What the decisions need to know besides the record. */
export interface RotationContext {
  /** The certificate the agent uses when the record has none active (the config's). */
  readonly baseCredentials: Credentials;
}

const DAY_MS = 86_400_000;

/** Whether a certificate expiring at `notAfter` (ms) is within `rotateBeforeDays` of `now` (ms). */
export function isDue(notAfter: number, now: number, rotateBeforeDays: number): boolean {
  return notAfter - now <= rotateBeforeDays * DAY_MS;
}

export function activeCredentials(record: RotationRecord, context: RotationContext): Credentials {
  return record.active ?? context.baseCredentials;
}

export function decide(record: RotationRecord, event: RotationEvent, context: RotationContext): Transition {
  const pending = record.pending;
  const current = activeCredentials(record, context);
  const ignore = (why: string): Transition => ({ actions: [{ type: 'ignore', why }] });
  // A failure before the new certificate connected: the robot stays on `current`; a certificate already issued for
  // the rotation is named as abandoned (never the one in use: `new-connected` is what makes it current).
  const fail = (requestId: string, reason: string, detail: string, files: readonly string[]): Transition => {
    const issued = pending && 'certificateId' in pending && pending.certificateId !== current.certificateId ? pending.certificateId : undefined;
    return {
      record: { ...record, pending: null },
      actions: [
        { type: 'discard', files },
        { type: 'report-failure', requestId, reason, detail, certificateId: current.certificateId, ...(issued ? { abandonedCertificateId: issued } : {}) },
      ],
    };
  };
  if (event.type === 'trigger') {
    if (pending) return ignore(`rotation ${pending.requestId} is already under way (${pending.step})`);
    return { actions: [{ type: 'generate-key', requestId: event.requestId, trigger: event.trigger }] };
  }
  if (event.type === 'key-ready') {
    if (pending) return { actions: [{ type: 'discard', files: [event.keyFile] }, { type: 'ignore', why: `rotation ${pending.requestId} is already under way` }] };
    const next: PendingRotation = {
      step: 'requested',
      requestId: event.requestId,
      trigger: event.trigger,
      startedAt: event.at,
      previousCertificateId: event.previousCertificateId,
      keyFile: event.keyFile,
      csrPem: event.csrPem,
    };
    return {
      record: { ...record, pending: next },
      actions: [{ type: 'publish-request', requestId: next.requestId, csrPem: next.csrPem, currentCertificateId: next.previousCertificateId }],
    };
  }
  if (event.type === 'resume') {
    if (!pending) return { actions: [] };
    switch (pending.step) {
      case 'requested':
        return { actions: [{ type: 'publish-request', requestId: pending.requestId, csrPem: pending.csrPem, currentCertificateId: pending.previousCertificateId }] };
      case 'issued':
        return { actions: [connectNew(pending)] };
      case 'confirming':
        return { actions: [confirmAction(pending)] };
    }
  }
  if (!pending || pending.requestId !== event.requestId) {
    return ignore(`${event.type} for ${event.requestId}, which is not the rotation under way (${pending?.requestId ?? 'none'})`);
  }
  switch (event.type) {
    case 'issued': {
      if (pending.step !== 'requested') return ignore(`issued while ${pending.step}: already have the certificate`);
      const next: PendingRotation = {
        step: 'issued',
        requestId: pending.requestId,
        trigger: pending.trigger,
        startedAt: pending.startedAt,
        previousCertificateId: pending.previousCertificateId,
        keyFile: pending.keyFile,
        certificateId: event.certificateId,
        certificateFile: event.certificateFile,
      };
      return { record: { ...record, pending: next }, actions: [connectNew(next)] };
    }
    case 'rejected':
      if (pending.step !== 'requested') return ignore(`a rejection while ${pending.step}`);
      return fail(pending.requestId, 'REQUEST_REJECTED', `${event.reason}: ${event.message}`, [pending.keyFile]);
    case 'reply-timeout':
      if (pending.step !== 'requested') return ignore(`reply timeout while ${pending.step}`);
      return fail(pending.requestId, 'NO_REPLY', 'the cloud did not answer the certificate request in time', [pending.keyFile]);
    case 'failed':
      if (pending.step === 'confirming') return ignore(`${event.reason} after the new certificate connected`);
      return fail(pending.requestId, event.reason, event.detail, [pending.keyFile, ...('certificateFile' in pending ? [pending.certificateFile] : [])]);
    case 'new-refused':
      if (pending.step !== 'issued') return ignore(`new-refused while ${pending.step}`);
      return fail(pending.requestId, 'NEW_CERTIFICATE_REFUSED', event.detail, [pending.keyFile, pending.certificateFile]);
    case 'new-connected': {
      if (pending.step !== 'issued') return ignore(`new-connected while ${pending.step}`);
      const next: PendingRotation = { ...pending, step: 'confirming' };
      return {
        record: { active: { certificateId: pending.certificateId, certificateFile: pending.certificateFile, privateKeyFile: pending.keyFile }, pending: next },
        actions: [confirmAction(next)],
      };
    }
    case 'rotated':
    case 'confirm-rejected': {
      if (pending.step !== 'confirming') return ignore(`${event.type} while ${pending.step}`);
      // The previous pair is no longer needed; the config's own files are the installer's and are never pruned.
      const actions: RotationAction[] = [{ type: 'prune' }];
      if (event.type === 'confirm-rejected') {
        // The robot is on its new certificate, which works; the cloud could not deactivate the old one: say so.
        actions.push({ type: 'report-failure', requestId: pending.requestId, reason: 'CONFIRM_REJECTED', detail: `${event.reason}: ${event.message}`, certificateId: pending.certificateId });
      }
      return { record: { ...record, pending: null }, actions };
    }
  }
}

function connectNew(pending: Extract<PendingRotation, { step: 'issued' }>): RotationAction {
  return {
    type: 'connect-new',
    requestId: pending.requestId,
    credentials: { certificateId: pending.certificateId, certificateFile: pending.certificateFile, privateKeyFile: pending.keyFile },
  };
}

function confirmAction(pending: Extract<PendingRotation, { step: 'confirming' }>): RotationAction {
  return { type: 'publish-confirm', requestId: pending.requestId, certificateId: pending.certificateId, previousCertificateId: pending.previousCertificateId };
}
