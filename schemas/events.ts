import { z } from 'zod';
import {
  EventsDroppedData,
  ProvisioningFailedData,
  TeleoperationStartedData,
  TeleoperationStoppedData,
  TELEMETRY_METRICS,
} from './device.js';
import { BatchId, Serial } from './provisioning.js';
import { CertificateIssuedData, CertificateRotatedData, CertificateRotationFailedData } from './rotation.js';
import {
  DeploymentId,
  ReleaseVersion,
  SoftwareStateData,
  UpdateDeferredData,
  UpdateFailedData,
  UpdateQueuedData,
  UpdateStartedData,
  UpdateSucceededData,
} from './deployments.js';
import { RobotId, RobotModel } from './robot-id.js';

/**
 * Domain events: the facts in the event log. Each carries a schema `version` so old records stay readable when a
 * payload changes shape; a new shape gets a new version and an upcaster, never an edit in place.
 */

export const AlertSeverity = z.enum(['warning', 'critical']);
export type AlertSeverity = z.infer<typeof AlertSeverity>;
export const TelemetryMetric = z.enum(TELEMETRY_METRICS);
export type TelemetryMetric = z.infer<typeof TelemetryMetric>;

const isoTimestamp = z.iso.datetime({ offset: true });

const envelope = {
  eventId: z.string().min(1).max(200),
  robotId: RobotId,
  /** When the fact happened (IoT Core's clock for presence, the agent's for its own facts, ours for commands). */
  at: isoTimestamp,
  version: z.literal(1),
};

const event = <T extends string, D extends z.ZodType>(type: T, data: D) =>
  z.object({ ...envelope, type: z.literal(type), data }).strict();

export const RobotRegistered = event('RobotRegistered', z.object({ model: RobotModel }).strict());
export const RobotConnected = event(
  'RobotConnected',
  z
    .object({
      sessionIdentifier: z.string(),
      versionNumber: z.number().int().nonnegative(),
      ipAddress: z.string().optional(),
      /** IoT Core's timestamp of the lifecycle event, ms since the epoch: ordering needs it. */
      timestamp: z.number().int().nonnegative(),
    })
    .strict(),
);
export const RobotDisconnected = event(
  'RobotDisconnected',
  z
    .object({
      sessionIdentifier: z.string(),
      versionNumber: z.number().int().nonnegative(),
      clientInitiated: z.boolean(),
      reason: z.string().optional(),
      timestamp: z.number().int().nonnegative(),
    })
    .strict(),
);
export const AlertRaised = event(
  'AlertRaised',
  z
    .object({
      metric: TelemetryMetric,
      severity: AlertSeverity,
      value: z.number(),
      threshold: z.number(),
    })
    .strict(),
);
export const AlertCleared = event(
  'AlertCleared',
  z.object({ metric: TelemetryMetric, value: z.number(), threshold: z.number() }).strict(),
);
export const TeleoperationStarted = event('TeleoperationStarted', TeleoperationStartedData);
export const TeleoperationStopped = event('TeleoperationStopped', TeleoperationStoppedData);
/**
 * The agent stated, after its link came back, that the session the cloud holds open is still running: the session is
 * confirmed again (a dropped link leaves it open but unconfirmed).
 */
export const TeleoperationConfirmed = event('TeleoperationConfirmed', z.object({}).strict());
export const RobotMarkedFailed = event(
  'RobotMarkedFailed',
  z.object({ reason: z.string().min(1).max(500), by: z.string().max(200) }).strict(),
);
export const RobotRecovered = event(
  'RobotRecovered',
  z.object({ by: z.string().max(200), note: z.string().max(500).optional() }).strict(),
);
/** The robot's agent lost this many of its own events (its offline queue was full): the log has a known gap. */
export const RobotEventsDropped = event('RobotEventsDropped', EventsDroppedData);

/**
 * The cloud refused `count` of the robot's own messages (telemetry, events) in one ingest batch, for good: broken
 * firmware or a clock that is not set. The reason and topic are those of the last one refused; the log line has all.
 */
export const DeviceMessagesRejected = event(
  'DeviceMessagesRejected',
  z
    .object({
      count: z.number().int().positive(),
      lastReason: z.string().min(1).max(500),
      lastTopic: z.string().max(256).nullable(),
    })
    .strict(),
);

/**
 * Fleet provisioning admitted a certificate as this robot (issue 11): the pre-provisioning hook recorded the claim on
 * the factory's allow-list. Written by the hook (the same module in AWS and locally), which alone knows serial, model
 * and batch; IoT activates the certificate only after the hook answers, so this says "admitted, certificate issued",
 * and the robot stays `provisioning` until it connects (robot-state `provisioning.connected`). Once per certificate
 * (eventId `provisioned:<certificateId>`). `supersededCertificateId`: a re-image's previous certificate, revoked
 * and detached by the certificate retirer (functions/app/retire-certificates.ts). `certificateNotAfter`: the admitted
 * certificate's expiry, read by the hook from the certificate IoT made (optional: records written before it lack it).
 */
export const RobotProvisioned = event(
  'RobotProvisioned',
  z
    .object({
      serial: Serial,
      model: RobotModel,
      batch: BatchId,
      /** IoT's certificate id (64 hex digits in AWS and locally). */
      certificateId: z.string().min(1).max(128),
      claim: z.enum(['first', 'reimage']),
      supersededCertificateId: z.string().min(1).max(128).optional(),
      certificateNotAfter: isoTimestamp.optional(),
    })
    .strict(),
);
/** The robot's agent reported a first-boot failure it met before it was provisioned (schemas/device.ts). */
export const ProvisioningFailed = event('ProvisioningFailed', ProvisioningFailedData);
/**
 * The robot connected with its new certificate and confirmed it; the cloud deactivated the old one (issue 11, item 4).
 * Written by the certificate-rotation function, once per rotation (eventId `certificate-rotated:<requestId>`).
 */
export const CertificateRotated = event('CertificateRotated', CertificateRotatedData);
/**
 * The cloud issued a certificate for a rotation request and recorded it before replying (issue 11, item 4): the open
 * rotation's certificate in the robot's state until a confirm, a failure, a re-image or a later issuance ends it.
 * Written by the certificate-rotation function (eventId `certificate-issued:<requestId>:<certificateId>`).
 */
export const CertificateIssued = event('CertificateIssued', CertificateIssuedData);
/**
 * The robot's agent reported a rotation that did not happen; it goes on with its current certificate. (Reason
 * `REIMAGED`: recorded by the cloud when a re-image ended an open rotation.)
 */
export const CertificateRotationFailed = event('CertificateRotationFailed', CertificateRotationFailedData);

/**
 * Software updates (issue 12, schemas/deployments.ts). `RobotUpdateQueued` is the orchestrator's (the robot is in a
 * batch job); Deferred/Started/Succeeded/Failed are the robot's own word through its outbox, or (Failed with
 * `source: 'jobs'`) IoT Jobs ending the execution without it. A robot's success in a rollback deployment is recorded
 * as `RobotUpdateRolledBack`. `SoftwareVersionReported`: the version the robot runs changed (its SoftwareState).
 */
export const RobotUpdateQueued = event('RobotUpdateQueued', UpdateQueuedData);
export const RobotUpdateDeferred = event('RobotUpdateDeferred', UpdateDeferredData);
export const RobotUpdateStarted = event('RobotUpdateStarted', UpdateStartedData);
export const RobotUpdateSucceeded = event('RobotUpdateSucceeded', UpdateSucceededData);
export const RobotUpdateFailed = event('RobotUpdateFailed', UpdateFailedData);
export const RobotUpdateRolledBack = event(
  'RobotUpdateRolledBack',
  UpdateSucceededData.extend({ kind: z.literal('rollback'), parentDeploymentId: DeploymentId.nullable() }).strict(),
);
export const SoftwareVersionReported = event('SoftwareVersionReported', SoftwareStateData.extend({ previous: ReleaseVersion.nullable() }).strict());

export const DomainEvent = z.discriminatedUnion('type', [
  RobotRegistered,
  RobotConnected,
  RobotDisconnected,
  AlertRaised,
  AlertCleared,
  TeleoperationStarted,
  TeleoperationStopped,
  TeleoperationConfirmed,
  RobotMarkedFailed,
  RobotRecovered,
  RobotEventsDropped,
  DeviceMessagesRejected,
  RobotProvisioned,
  ProvisioningFailed,
  CertificateIssued,
  CertificateRotated,
  CertificateRotationFailed,
  RobotUpdateQueued,
  RobotUpdateDeferred,
  RobotUpdateStarted,
  RobotUpdateSucceeded,
  RobotUpdateFailed,
  RobotUpdateRolledBack,
  SoftwareVersionReported,
]);
export type DomainEvent = z.infer<typeof DomainEvent>;
export type DomainEventType = DomainEvent['type'];
export type EventOf<T extends DomainEventType> = Extract<DomainEvent, { type: T }>;
export const DOMAIN_EVENT_TYPES = DomainEvent.options.map((o) => o.shape.type.value);

/** An event as stored in the log: the log gives it its sequence number and the time it was recorded. */
export interface RecordedEvent<E extends DomainEvent = DomainEvent> {
  readonly seq: number;
  readonly recordedAt: string;
  readonly event: E;
}
