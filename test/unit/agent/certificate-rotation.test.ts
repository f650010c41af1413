import { describe, expect, it } from 'vitest';
import {
  decide,
  isDue,
  NO_ROTATION,
  type RotationContext,
  type RotationEvent,
  type RotationRecord,
} from '../../../agent/core/certificate-rotation.js';

const OLD = 'a'.repeat(64);
const NEW = 'b'.repeat(64);
const context: RotationContext = { baseCredentials: { certificateId: OLD, certificateFile: '/etc/robot.pem', privateKeyFile: '/etc/robot.key' } };

/** Runs events from a record, as the driver does (persisting every record a transition gives). */
function run(record: RotationRecord, ...events: RotationEvent[]) {
  const actions = [];
  let current = record;
  for (const event of events) {
    const transition = decide(current, event, context);
    if (transition.record) current = transition.record;
    actions.push(...transition.actions);
  }
  return { record: current, actions };
}

const keyReady: RotationEvent = { type: 'key-ready', requestId: 'req-00001', trigger: 'command', keyFile: '/s/req-00001.key', csrPem: 'CSR', previousCertificateId: OLD, at: 1_000 };
const issued: RotationEvent = { type: 'issued', requestId: 'req-00001', certificateId: NEW, certificateFile: '/s/req-00001.pem' };

describe('certificate rotation core', () => {
  it('a trigger while idle makes a key; the key makes a persisted request', () => {
    expect(decide(NO_ROTATION, { type: 'trigger', requestId: 'req-00001', trigger: 'command' }, context).actions).toEqual([
      { type: 'generate-key', requestId: 'req-00001', trigger: 'command' },
    ]);
    const { record, actions } = run(NO_ROTATION, keyReady);
    expect(record.pending).toMatchObject({ step: 'requested', requestId: 'req-00001', previousCertificateId: OLD, startedAt: 1_000 });
    expect(record.active).toBeNull();
    expect(actions).toEqual([{ type: 'publish-request', requestId: 'req-00001', csrPem: 'CSR', currentCertificateId: OLD }]);
    expect(JSON.stringify(record)).not.toMatch(/PRIVATE KEY/);
  });

  it('one rotation at a time: a second trigger or key is ignored (and the stray key discarded)', () => {
    const { record } = run(NO_ROTATION, keyReady);
    expect(decide(record, { type: 'trigger', requestId: 'req-00002', trigger: 'expiry' }, context)).toEqual({
      actions: [{ type: 'ignore', why: expect.stringContaining('req-00001') }],
    });
    const second = decide(record, { ...keyReady, requestId: 'req-00002', keyFile: '/s/req-00002.key' } as RotationEvent, context);
    expect(second.record).toBeUndefined();
    expect(second.actions[0]).toEqual({ type: 'discard', files: ['/s/req-00002.key'] });
  });

  it('the happy path: issued → connect new → (connected) active switches, confirm → rotated prunes', () => {
    const afterIssued = run(NO_ROTATION, keyReady, issued);
    expect(afterIssued.record.active).toBeNull(); // still on the old certificate until the new one connects
    expect(afterIssued.actions.at(-1)).toEqual({
      type: 'connect-new',
      requestId: 'req-00001',
      credentials: { certificateId: NEW, certificateFile: '/s/req-00001.pem', privateKeyFile: '/s/req-00001.key' },
    });
    const connected = run(afterIssued.record, { type: 'new-connected', requestId: 'req-00001' });
    expect(connected.record.active).toEqual({ certificateId: NEW, certificateFile: '/s/req-00001.pem', privateKeyFile: '/s/req-00001.key' });
    expect(connected.record.pending?.step).toBe('confirming');
    expect(connected.actions).toEqual([{ type: 'publish-confirm', requestId: 'req-00001', certificateId: NEW, previousCertificateId: OLD }]);
    const done = run(connected.record, { type: 'rotated', requestId: 'req-00001' });
    expect(done.record).toEqual({ active: connected.record.active, pending: null });
    expect(done.actions).toEqual([{ type: 'prune' }]);
  });

  it('a new certificate refused: back to idle on the old one, its files discarded, one named failure', () => {
    const { record, actions } = run(NO_ROTATION, keyReady, issued, { type: 'new-refused', requestId: 'req-00001', detail: 'CONNACK 5' });
    expect(record).toEqual(NO_ROTATION);
    expect(actions.slice(-2)).toEqual([
      { type: 'discard', files: ['/s/req-00001.key', '/s/req-00001.pem'] },
      // The issued certificate is named abandoned: the cloud deactivates it (functions/app/retire-certificates.ts).
      { type: 'report-failure', requestId: 'req-00001', reason: 'NEW_CERTIFICATE_REFUSED', detail: 'CONNACK 5', certificateId: OLD, abandonedCertificateId: NEW },
    ]);
  });

  it('names the abandoned certificate only once one was issued, and never the one in use', () => {
    const storageFailed = run(NO_ROTATION, keyReady, issued, { type: 'failed', requestId: 'req-00001', reason: 'STORAGE_FAILED', detail: 'disk full' });
    expect(storageFailed.actions.at(-1)).toMatchObject({ type: 'report-failure', reason: 'STORAGE_FAILED', certificateId: OLD, abandonedCertificateId: NEW });
    // Before the cloud issued anything there is nothing to abandon.
    const noReply = run(NO_ROTATION, keyReady, { type: 'reply-timeout', requestId: 'req-00001' });
    expect(noReply.actions.at(-1)).toEqual(expect.not.objectContaining({ abandonedCertificateId: expect.anything() }));
    // A cloud that issued the certificate already in use: it is not named abandoned.
    const same = run(NO_ROTATION, keyReady, { ...issued, certificateId: OLD } as RotationEvent, { type: 'new-refused', requestId: 'req-00001', detail: 'x' });
    expect(same.actions.at(-1)).toMatchObject({ type: 'report-failure', certificateId: OLD });
    expect(same.actions.at(-1)).not.toHaveProperty('abandonedCertificateId');
  });

  it.each([
    [{ type: 'rejected', requestId: 'req-00001', reason: 'INVALID_CSR', message: 'bad' } as RotationEvent, 'REQUEST_REJECTED'],
    [{ type: 'reply-timeout', requestId: 'req-00001' } as RotationEvent, 'NO_REPLY'],
    [{ type: 'failed', requestId: 'req-00001', reason: 'CERTIFICATE_MISMATCH', detail: 'x' } as RotationEvent, 'CERTIFICATE_MISMATCH'],
  ])('a request that fails (%j) ends the rotation as %s', (event, reason) => {
    const { record, actions } = run(NO_ROTATION, keyReady, event);
    expect(record.pending).toBeNull();
    expect(actions.filter((action) => action.type === 'report-failure')).toEqual([expect.objectContaining({ reason })]);
  });

  it('events of another request, or late ones, change nothing', () => {
    const { record } = run(NO_ROTATION, keyReady, issued);
    expect(decide(record, { type: 'issued', requestId: 'req-99999', certificateId: NEW, certificateFile: '/x' }, context).record).toBeUndefined();
    expect(decide(record, { type: 'reply-timeout', requestId: 'req-00001' }, context).record).toBeUndefined();
    const connected = run(record, { type: 'new-connected', requestId: 'req-00001' }).record;
    // Once on the new certificate, a late refusal cannot send the robot back to the old one (which may be inactive).
    expect(decide(connected, { type: 'new-refused', requestId: 'req-00001', detail: 'late' }, context).record).toBeUndefined();
    expect(decide(connected, { type: 'failed', requestId: 'req-00001', reason: 'STORAGE_FAILED', detail: 'late' }, context).record).toBeUndefined();
  });

  it('resume after a restart continues from the persisted step', () => {
    expect(decide(NO_ROTATION, { type: 'resume' }, context).actions).toEqual([]);
    const requested = run(NO_ROTATION, keyReady).record;
    expect(decide(requested, { type: 'resume' }, context).actions).toEqual([
      { type: 'publish-request', requestId: 'req-00001', csrPem: 'CSR', currentCertificateId: OLD },
    ]);
    const stored = run(requested, issued).record;
    expect(decide(stored, { type: 'resume' }, context).actions).toEqual([expect.objectContaining({ type: 'connect-new' })]);
    const confirming = run(stored, { type: 'new-connected', requestId: 'req-00001' }).record;
    expect(decide(confirming, { type: 'resume' }, context).actions).toEqual([
      { type: 'publish-confirm', requestId: 'req-00001', certificateId: NEW, previousCertificateId: OLD },
    ]);
  });

  it('a confirm the cloud refuses keeps the new certificate and reports it', () => {
    const confirming = run(NO_ROTATION, keyReady, issued, { type: 'new-connected', requestId: 'req-00001' }).record;
    const { record, actions } = run(confirming, { type: 'confirm-rejected', requestId: 'req-00001', reason: 'CERTIFICATE_NOT_ATTACHED', message: 'm' });
    expect(record.active?.certificateId).toBe(NEW);
    expect(record.pending).toBeNull();
    expect(actions).toContainEqual(expect.objectContaining({ type: 'report-failure', reason: 'CONFIRM_REJECTED', certificateId: NEW }));
  });

  it('is due within rotateBeforeDays of notAfter', () => {
    const day = 86_400_000;
    expect(isDue(100 * day, 69 * day, 30)).toBe(false);
    expect(isDue(100 * day, 70 * day, 30)).toBe(true);
    expect(isDue(100 * day, 101 * day, 30)).toBe(true);
  });
});
