import { z } from 'zod';
import { APP } from './topics.js';

/**
 * Certificate rotation with no gap (issue 11, item 4): the contract between a robot's agent
 * (agent/core/certificate-rotation.ts) and the cloud's `certificate-rotation` function
 * (functions/app/certificate-rotation.ts), over the robot's own live connection. One definition, used by the agent,
 * the CDK stack (rule, Lambda, grants), the local cloud (rule target) and the HTTP route.
 *
 *   cloud ──cmd/heartbeat/<thing>/rotate-certificate {requestId}──▶ robot          (POST …/rotate-certificate, or
 *                                                                                    the agent's own expiry check)
 *   robot ──dt/heartbeat/<thing>/certificate/request {requestId, csr, currentCertificateId}──▶ cloud
 *   cloud ──cmd/heartbeat/<thing>/certificate-issued {requestId, certificateId, certificatePem}──▶ robot
 *         (or {requestId, rejected: {reason, message}})
 *   robot stores the new key + certificate, connects with them (same client id: the broker hands the id over)
 *   robot ──dt/heartbeat/<thing>/certificate/confirm {requestId, certificateId, previousCertificateId}──▶ cloud
 *   cloud deactivates and detaches the previous certificate, appends CertificateRotated, and answers
 *   cloud ──cmd/heartbeat/<thing>/certificate-rotated {requestId, …}──▶ robot
 *
 * The thing policy (schemas/thing-policy.ts) already lets a robot publish only under `dt/heartbeat/<its thing>/*` and
 * receive only `cmd/heartbeat/<its thing>/*`, so every topic here is its own and no other robot's. The private key
 * never appears in any of these messages: only the CSR (its public key) travels.
 */

/** The requests the cloud sends a robot for rotation, on `cmd/heartbeat/<thing>/<request>` (schemas/topics.ts). */
export const ROTATION_COMMANDS = {
  /** Rotate now (POST /api/v2/robots/{id}/rotate-certificate). */
  rotate: 'rotate-certificate',
  /** The answer to a certificate request: the new certificate, or why not. */
  issued: 'certificate-issued',
  /** The answer to a confirm: the previous certificate is deactivated. */
  rotated: 'certificate-rotated',
} as const;

/** The robot's rotation messages, under its own data topics. */
export const rotationTopics = {
  request: (thing: string) => `dt/${APP}/${thing}/certificate/request`,
  confirm: (thing: string) => `dt/${APP}/${thing}/certificate/confirm`,
} as const;

/** What the cloud may publish for rotation, as IAM topic resource names (`*` = any robot). */
export const ROTATION_COMMAND_TOPICS = [
  `cmd/${APP}/*/${ROTATION_COMMANDS.rotate}`,
  `cmd/${APP}/*/${ROTATION_COMMANDS.issued}`,
  `cmd/${APP}/*/${ROTATION_COMMANDS.rotated}`,
] as const;

/**
 * The IoT rule that hands a robot's rotation messages to the `certificate-rotation` function (a Lambda action in AWS,
 * the same app function in the local cloud). `topic(3)` is the thing name (the thing policy guarantees it is the
 * publisher's own), `topic(5)` the message (`request` or `confirm`). Not in the ingest stream: rotation talks back.
 */
export const ROTATION_RULE = {
  name: 'heartbeat_certificate_rotation',
  topicFilter: `dt/${APP}/+/certificate/+`,
  sql: `SELECT *, topic(3) AS thingName, topic(5) AS message, topic() AS topic FROM 'dt/${APP}/+/certificate/+'`,
  /**
   * Only the local rules engine uses it (it runs a robot's actions in order per key); distinct from the ingest rules'
   * keys, so a slow signature never holds up the robot's telemetry.
   */
  partitionKey: 'rotation-${topic(3)}',
  description: "Robots' certificate rotation requests and confirmations to the certificate-rotation function",
} as const;

const requestId = z
  .string()
  .min(8)
  .max(128)
  .regex(/^[A-Za-z0-9:_.-]+$/, 'letters, digits and : _ . - only (a UUID is ideal)');
/** IoT's certificate id: SHA-256 of the DER certificate, 64 lower-case hex digits. */
export const CertificateId = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lower-case hex digits (SHA-256 of the DER certificate)');
const isoTimestamp = z.iso.datetime({ offset: true });
const csrPem = z
  .string()
  .max(8_192)
  .refine((text) => text.includes('-----BEGIN CERTIFICATE REQUEST-----'), 'must be a PEM certificate signing request')
  .refine((text) => !/PRIVATE KEY/.test(text), 'must not contain a private key');

/** `cmd/heartbeat/<thing>/rotate-certificate`: rotate now, under this request id. */
export const RotateCertificateCommand = z.object({ requestId }).loose();
export type RotateCertificateCommand = z.infer<typeof RotateCertificateCommand>;

/** The robot asks for a certificate for the new key it made (`dt/heartbeat/<thing>/certificate/request`). */
export const CertificateRotationRequest = z
  .object({
    requestId,
    /** PKCS#10, CN = the thing name; only the public key travels. */
    csr: csrPem,
    /** The certificate the robot is connected with now: the one to deactivate once the new one is confirmed. */
    currentCertificateId: CertificateId,
  })
  .strict();
export type CertificateRotationRequest = z.infer<typeof CertificateRotationRequest>;

/** The robot is connected with the new certificate (`dt/heartbeat/<thing>/certificate/confirm`). */
export const CertificateRotationConfirm = z
  .object({
    requestId,
    certificateId: CertificateId,
    /** The certificate it used before: the cloud deactivates it (it must be attached to the same thing). */
    previousCertificateId: CertificateId,
  })
  .strict();
export type CertificateRotationConfirm = z.infer<typeof CertificateRotationConfirm>;

/** Why the cloud refused a rotation message. */
export const ROTATION_REJECTIONS = [
  /** The message is not a valid request or confirm (the message names the field). */
  'INVALID_REQUEST',
  /** The CSR could not be signed (not PKCS#10, bad signature, wrong key type). */
  'INVALID_CSR',
  /** A certificate named in the message is not attached to the robot's thing (or not active). */
  'CERTIFICATE_NOT_ATTACHED',
  /** The new and previous certificates are the same. */
  'SAME_CERTIFICATE',
  /** The robot already reported this request failed: the certificate issued for it is deactivated at once. */
  'REQUEST_ENDED',
] as const;
export const RotationRejection = z.enum(ROTATION_REJECTIONS);
export type RotationRejection = z.infer<typeof RotationRejection>;

/** The cloud's answer to a request, on `cmd/heartbeat/<thing>/certificate-issued`. */
export const CertificateIssuedReply = z.union([
  z
    .object({
      requestId,
      certificateId: CertificateId,
      certificatePem: z.string().max(8_192).refine((text) => text.includes('-----BEGIN CERTIFICATE-----'), 'must be a PEM certificate'),
    })
    .strict(),
  z.object({ requestId, rejected: z.object({ reason: RotationRejection, message: z.string().max(500) }).strict() }).strict(),
]);
export type CertificateIssuedReply = z.infer<typeof CertificateIssuedReply>;

/** The cloud's answer to a confirm, on `cmd/heartbeat/<thing>/certificate-rotated`. */
export const CertificateRotatedReply = z.union([
  z.object({ requestId, certificateId: CertificateId, deactivatedCertificateId: CertificateId }).strict(),
  z.object({ requestId, rejected: z.object({ reason: RotationRejection, message: z.string().max(500) }).strict() }).strict(),
]);
export type CertificateRotatedReply = z.infer<typeof CertificateRotatedReply>;

/**
 * Why a rotation failed, as the agent reports it (`CertificateRotationFailed`). A newer agent may send another
 * upper-case name; these are the ones this version knows.
 */
export const ROTATION_FAILURE_REASONS = [
  /** The cloud refused the request (its reason is in `detail`). */
  'REQUEST_REJECTED',
  /** The cloud did not answer the request in time. */
  'NO_REPLY',
  /** The new certificate could not connect within the time allowed: the robot stays on the old one. */
  'NEW_CERTIFICATE_REFUSED',
  /** The new key or certificate could not be written to the robot's disk. */
  'STORAGE_FAILED',
  /** The certificate the cloud sent is not the new key's (or not a certificate at all). */
  'CERTIFICATE_MISMATCH',
  /**
   * Recorded by the cloud, not the agent: the robot was re-imaged while a rotation was open; the certificate issued
   * for it went with the old image and is deactivated (the robot's decider, on RobotProvisioned{claim: 'reimage'}).
   */
  'REIMAGED',
] as const;
export type KnownRotationFailureReason = (typeof ROTATION_FAILURE_REASONS)[number];
export const RotationFailureReason = z.string().regex(/^[A-Z][A-Z0-9_]{0,63}$/, 'must be an upper-case reason name such as NO_REPLY');

/** The agent's report of a rotation that did not happen (an AgentEvent, through the outbox). */
export const CertificateRotationFailedData = z
  .object({
    requestId,
    reason: RotationFailureReason,
    /** What the agent saw, for people; no secret. */
    detail: z.string().max(500).optional(),
    /** The certificate the robot goes on using. */
    certificateId: CertificateId.optional(),
    /**
     * The new certificate the cloud issued for this rotation, which the robot got but will never use (it could not
     * connect with it, or not store it): the cloud deactivates and detaches it (functions/app/retire-certificates.ts),
     * so an abandoned rotation leaves no extra active certificate. Absent when no certificate was issued (or from
     * agents older than the field). When the agent does not name one (NO_REPLY: the reply was lost), the robot's
     * decider fills it in from the CertificateIssued the cloud recorded for the same requestId, so the recorded event
     * names every certificate issued for the failed rotation.
     */
    abandonedCertificateId: CertificateId.optional(),
  })
  .strict();
export type CertificateRotationFailedData = z.infer<typeof CertificateRotationFailedData>;

/**
 * What the cloud records when it issued a certificate for a rotation request, before it replies
 * (`CertificateIssued`, eventId `certificate-issued:<requestId>:<certificateId>`). Written first so that no active
 * certificate exists that the robot's log does not name: whoever ends the rotation (the robot's confirm, its
 * CertificateRotationFailed even without a certificate id, a re-image, a later issuance) finds it in the robot's state
 * and the certificate retirer deactivates it unless it is in use.
 */
export const CertificateIssuedData = z
  .object({
    requestId,
    certificateId: CertificateId,
    /** The certificate's expiry, when the cloud could read it. */
    notAfter: isoTimestamp.nullable(),
    /**
     * The certificate of the rotation that was open until now (a repeat of the same request after the robot lost the
     * reply or restarted, or an older rotation the robot has left), which the robot does not use: the retirer
     * deactivates it. Never the certificate the request says the robot uses now.
     */
    replacedCertificateId: CertificateId.optional(),
  })
  .strict();
export type CertificateIssuedData = z.infer<typeof CertificateIssuedData>;

/** What the cloud records once the robot confirmed its new certificate and the old one is deactivated. */
export const CertificateRotatedData = z
  .object({
    requestId,
    oldCertificateId: CertificateId,
    newCertificateId: CertificateId,
    /** The new certificate's expiry, when the cloud could read it. */
    notAfter: isoTimestamp.nullable(),
  })
  .strict();
export type CertificateRotatedData = z.infer<typeof CertificateRotatedData>;

/** POST /api/v2/robots/{id}/rotate-certificate takes no fields (an empty JSON object, or no body). */
export const RotateCertificateRequest = z.object({}).strict();
export type RotateCertificateRequest = z.infer<typeof RotateCertificateRequest>;

/** POST /api/v2/robots/{id}/rotate-certificate: 202, the robot was asked; the outcome arrives in its event log. */
export const RotateCertificateResult = z
  .object({
    robotId: z.string(),
    /** Names the rotation in the robot's CertificateRotated / CertificateRotationFailed. */
    requestId,
  })
  .strict();
export type RotateCertificateResult = z.infer<typeof RotateCertificateResult>;
