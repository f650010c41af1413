import {
  CertificateRotationConfirm,
  CertificateRotationRequest,
  ROTATION_COMMANDS,
  type CertificateIssuedReply,
  type CertificateRotatedReply,
  type RotationRejection,
} from '../../schemas/rotation.js';
import { RobotId } from '../../schemas/robot-id.js';
import { certificateOf } from '../domain/robot-state.js';
import { executeRobotCommand } from './execute-robot-command.js';
import type { EventLog, RobotCommandChannel } from './ports.js';

/**
 * The cloud's half of certificate rotation with no gap (issue 11, item 4; the protocol is schemas/rotation.ts). The
 * IoT rule `heartbeat_certificate_rotation` hands it every message a robot publishes on
 * `dt/heartbeat/<thing>/certificate/{request,confirm}`, with `thingName` from the topic (the thing policy makes it the
 * publisher's own). The same function runs as the `CertificateRotation` Lambda in AWS and in the local cloud; only the
 * certificate registry differs (IoT's control plane, or the local CA and thing registry).
 *
 * INVARIANTS
 * - A request is signed only if the certificate the robot says it uses now is attached to its thing and active: a
 *   robot gets new certificates only for itself. The new certificate is active and attached to the same thing before
 *   the reply goes out, so the robot can connect with it at once; the old one stays active.
 * - No issued certificate goes unrecorded past the reply: CertificateIssued is appended before it (a failure to append
 *   throws before the robot hears of it), and a certificate the log does not keep as the open rotation's (the robot
 *   already reported the request failed) is deactivated at once. The rotation's end (confirm, failure, re-image,
 *   a later issuance) then names it for the certificate retirer.
 * - The old certificate is deactivated only on a confirm, and only if the NEW one is active on the robot's thing
 *   (which only a certificate issued for it can be) and the old one is attached to that thing: a robot can never
 *   deactivate another robot's certificate, nor leave itself without an active one by confirming a certificate it
 *   does not have.
 * - A confirm is idempotent: a repeat (the robot did not hear the answer) finds the old certificate already inactive,
 *   deactivates nothing more and appends nothing more (the event id names the request); it is answered again.
 * - Every message gets exactly one answer on the robot's reply topic, or, when it cannot even be read as naming a
 *   request, a log line; a failure of AWS itself throws (Lambda retries the asynchronous invocation).
 */

/** What the function needs of IoT's certificate registry. */
export interface CertificateRegistry {
  /**
   * A new certificate for the CSR, ACTIVE and attached to `thingName` (AWS: CreateCertificateFromCsr with setAsActive,
   * then AttachThingPrincipal). Throws InvalidCsrError for a CSR that cannot be signed.
   */
  issue(thingName: string, csrPem: string): Promise<{ readonly certificateId: string; readonly certificatePem: string }>;
  /** The certificate's standing on `thingName`: attached and ACTIVE, attached but not active, or not attached. */
  standing(thingName: string, certificateId: string): Promise<'active' | 'inactive' | 'not-attached'>;
  /** Deactivates the certificate and detaches it from the thing (AWS: UpdateCertificate INACTIVE, DetachThingPrincipal). */
  retire(thingName: string, certificateId: string): Promise<void>;
  /** The certificate's expiry, when the registry knows it (ISO 8601). */
  notAfter(certificateId: string): Promise<string | null>;
}

/** A CSR the registry cannot sign; the message says why. */
export class InvalidCsrError extends Error {
  override readonly name = 'InvalidCsrError';
}

export interface RotationDependencies {
  readonly certificates: CertificateRegistry;
  /** Replies on `cmd/heartbeat/<thing>/<request>`. */
  readonly replies: RobotCommandChannel;
  readonly eventLog: EventLog;
  readonly now: () => Date;
  readonly log: (level: 'info' | 'warn', message: string, details: Record<string, unknown>) => void;
}

/** What the rule delivers: the robot's message with the rule's `thingName` and `message` (`request` | `confirm`). */
export type RotationOutcome =
  | { readonly kind: 'issued'; readonly robotId: string; readonly requestId: string; readonly certificateId: string }
  | { readonly kind: 'rotated'; readonly robotId: string; readonly requestId: string; readonly oldCertificateId: string; readonly newCertificateId: string }
  | { readonly kind: 'rejected'; readonly robotId: string; readonly requestId: string; readonly reason: RotationRejection; readonly message: string }
  | { readonly kind: 'dropped'; readonly why: string };

export async function handleRotationMessage(deps: RotationDependencies, input: unknown): Promise<RotationOutcome> {
  const record = typeof input === 'object' && input !== null ? (input as Record<string, unknown>) : {};
  const { thingName, message, topic: _topic, ...body } = record;
  const robot = RobotId.safeParse(thingName);
  if (!robot.success) return drop(deps, 'the rule gave no valid thing name', { thingName });
  const robotId = robot.data;
  if (message === 'request') return request(deps, robotId, body);
  if (message === 'confirm') return confirm(deps, robotId, body);
  return drop(deps, `unknown rotation message ${JSON.stringify(message)}`, { robotId });
}

async function request(deps: RotationDependencies, robotId: string, body: Record<string, unknown>): Promise<RotationOutcome> {
  const parsed = CertificateRotationRequest.safeParse(body);
  if (!parsed.success) return rejectInvalid(deps, robotId, ROTATION_COMMANDS.issued, body, parsed.error);
  const { requestId, csr, currentCertificateId } = parsed.data;
  const reject = (reason: RotationRejection, text: string) => rejected(deps, robotId, ROTATION_COMMANDS.issued, requestId, reason, text);
  if ((await deps.certificates.standing(robotId, currentCertificateId)) !== 'active') {
    return reject('CERTIFICATE_NOT_ATTACHED', `certificate ${currentCertificateId} is not an active certificate of ${robotId}`);
  }
  let issued: { certificateId: string; certificatePem: string };
  try {
    issued = await deps.certificates.issue(robotId, csr);
  } catch (error) {
    if (!(error instanceof InvalidCsrError)) throw error;
    return reject('INVALID_CSR', `csr: ${error.message}`);
  }
  // Recorded before the reply: from here on the robot's log names the certificate, so a lost reply, a failure or a
  // re-image ends with it deactivated (functions/app/retire-certificates.ts) instead of ACTIVE and unknown.
  const recorded = await executeRobotCommand(
    deps.eventLog,
    robotId,
    {
      type: 'RecordCertificateIssuance',
      at: deps.now().toISOString(),
      requestId,
      certificateId: issued.certificateId,
      currentCertificateId,
      notAfter: await deps.certificates.notAfter(issued.certificateId),
    },
    { now: deps.now },
  );
  if (recorded.head?.state.certificate?.issued?.certificateId !== issued.certificateId) {
    // The robot already reported this request failed (the reply would come too late): nobody will use it.
    await deps.certificates.retire(robotId, issued.certificateId);
    return reject('REQUEST_ENDED', `rotation ${requestId} already ended (the robot reported it failed); start a new one`);
  }
  const reply: CertificateIssuedReply = { requestId, certificateId: issued.certificateId, certificatePem: issued.certificatePem };
  await deps.replies.send(robotId, ROTATION_COMMANDS.issued, reply);
  deps.log('info', 'certificate issued for rotation', { robotId, requestId, certificateId: issued.certificateId, currentCertificateId });
  return { kind: 'issued', robotId, requestId, certificateId: issued.certificateId };
}

async function confirm(deps: RotationDependencies, robotId: string, body: Record<string, unknown>): Promise<RotationOutcome> {
  const parsed = CertificateRotationConfirm.safeParse(body);
  if (!parsed.success) return rejectInvalid(deps, robotId, ROTATION_COMMANDS.rotated, body, parsed.error);
  const { requestId, certificateId, previousCertificateId } = parsed.data;
  const reject = (reason: RotationRejection, text: string) => rejected(deps, robotId, ROTATION_COMMANDS.rotated, requestId, reason, text);
  if (certificateId === previousCertificateId) return reject('SAME_CERTIFICATE', 'certificateId and previousCertificateId are the same certificate');
  if ((await deps.certificates.standing(robotId, certificateId)) !== 'active') {
    return reject('CERTIFICATE_NOT_ATTACHED', `certificate ${certificateId} is not an active certificate of ${robotId}: keep the previous one`);
  }
  const previous = await deps.certificates.standing(robotId, previousCertificateId);
  if (previous === 'active') await deps.certificates.retire(robotId, previousCertificateId);
  else if (previous === 'not-attached') {
    // Either a repeat after an earlier confirm detached it (then the log holds the rotation already), or a name the
    // thing never had: nothing to deactivate either way, and nothing to record for a stranger.
    const head = await deps.eventLog.readHead(robotId);
    if (!head || certificateOf(head.state).id !== certificateId) {
      return reject('CERTIFICATE_NOT_ATTACHED', `certificate ${previousCertificateId} is not a certificate of ${robotId}`);
    }
  }
  const notAfter = await deps.certificates.notAfter(certificateId);
  await executeRobotCommand(
    deps.eventLog,
    robotId,
    {
      type: 'RecordCertificateRotation',
      at: deps.now().toISOString(),
      requestId,
      oldCertificateId: previousCertificateId,
      newCertificateId: certificateId,
      notAfter,
    },
    { now: deps.now },
  );
  const reply: CertificateRotatedReply = { requestId, certificateId, deactivatedCertificateId: previousCertificateId };
  await deps.replies.send(robotId, ROTATION_COMMANDS.rotated, reply);
  deps.log('info', 'certificate rotated; the previous one is inactive', { robotId, requestId, certificateId, previousCertificateId });
  return { kind: 'rotated', robotId, requestId, oldCertificateId: previousCertificateId, newCertificateId: certificateId };
}

async function rejectInvalid(
  deps: RotationDependencies,
  robotId: string,
  replyTo: string,
  body: Record<string, unknown>,
  error: { issues: readonly { path: readonly PropertyKey[]; message: string }[] },
): Promise<RotationOutcome> {
  const issue = error.issues[0];
  const text = `${issue?.path.map(String).join('.') || '(message)'}: ${issue?.message ?? 'invalid'}`;
  const requestId = typeof body.requestId === 'string' && /^[A-Za-z0-9:_.-]{8,128}$/.test(body.requestId) ? body.requestId : undefined;
  if (requestId === undefined) return drop(deps, `a rotation message without a valid requestId (${text})`, { robotId });
  return rejected(deps, robotId, replyTo, requestId, 'INVALID_REQUEST', text);
}

async function rejected(
  deps: RotationDependencies,
  robotId: string,
  replyTo: string,
  requestId: string,
  reason: RotationRejection,
  message: string,
): Promise<RotationOutcome> {
  await deps.replies.send(robotId, replyTo, { requestId, rejected: { reason, message: message.slice(0, 500) } });
  deps.log('warn', 'certificate rotation refused', { robotId, requestId, reason, message });
  return { kind: 'rejected', robotId, requestId, reason, message };
}

function drop(deps: RotationDependencies, why: string, details: Record<string, unknown>): RotationOutcome {
  deps.log('warn', `rotation message dropped: ${why}`, details);
  return { kind: 'dropped', why };
}
