import { z } from 'zod';
import { ProvisioningFailureReason, Serial } from './provisioning.js';
import { CertificateRotationFailedData } from './rotation.js';
import { SoftwareStateData, UpdateDeferredData, UpdateFailedData, UpdateStartedData, UpdateSucceededData } from './deployments.js';

/**
 * Messages a robot's agent publishes. Firmware in other languages validates against the JSON Schema exported from
 * these (`npm run schemas:export`), so every field says what it is.
 */

const percent = z.number().min(0).max(100);
/** ISO 8601 with an offset; bounded so ids derived from it stay within the log's 200-character eventId. */
const isoTimestamp = z.iso.datetime({ offset: true }).max(40);

/**
 * One telemetry reading. Every metric is optional, and the cloud merges samples PER METRIC (schemas/telemetry.ts): a
 * sample updates only the metrics it carries, every value keeps the `sampledAt` of the sample that carried it (so each
 * has its own age in the API), and a value is replaced only by one sampled later. A sample with only `sampledAt`
 * changes no value. Views show each value's age, and every value of an offline robot as stale.
 */
export const TelemetrySample = z
  .object({
    /** When the agent took the sample (its clock, ISO 8601). */
    sampledAt: isoTimestamp.describe(
      "When the robot took the sample (its clock). Each metric carried here is stored with this time and replaces the stored value only if that value was sampled earlier; metrics left out keep their last value and its time.",
    ),
    cpuPercent: percent.optional(),
    memoryPercent: percent.optional(),
    memoryUsedBytes: z.number().int().nonnegative().optional(),
    diskPercent: percent.optional(),
    cpuTemperatureC: z.number().min(-60).max(200).optional(),
    uptimeSeconds: z.number().nonnegative().optional(),
    load1: z.number().nonnegative().optional(),
    networkRxBytes: z.number().int().nonnegative().optional(),
    networkTxBytes: z.number().int().nonnegative().optional(),
    agentVersion: z.string().max(64).optional(),
    lerobotVersion: z.string().max(64).optional(),
  })
  .strict();
export type TelemetrySample = z.infer<typeof TelemetrySample>;

/**
 * What the telemetry topic carries: a sample, plus `requestId` when it answers a `report-now` (POST /api/v2/discover):
 * the live feed's RobotTelemetry then carries that id, so the dashboard can tell the answers to its discover apart.
 */
export const TelemetryMessage = TelemetrySample.extend({ requestId: z.string().min(1).max(128).optional() }).strict();
export type TelemetryMessage = z.infer<typeof TelemetryMessage>;

/** The numeric metrics of a sample that thresholds can watch. */
export const TELEMETRY_METRICS = ['cpuPercent', 'memoryPercent', 'diskPercent', 'cpuTemperatureC'] as const;

const eventId = z
  .string()
  .min(8)
  .max(128)
  .regex(/^[A-Za-z0-9:_.-]+$/, 'letters, digits and : _ . - only (a UUID is ideal)');

const operatorAddress = z.string().min(1).max(64);

export const TeleoperationStartedData = z
  .object({
    operatorAddress: operatorAddress.optional(),
    /** Which detector signals fired, e.g. ["actions", "peer"]. */
    signals: z.array(z.string().min(1).max(32)).max(16).default([]),
    score: z.number().min(0).max(1).optional(),
  })
  .strict();

export const TeleoperationStoppedData = z
  .object({
    durationMs: z.number().int().nonnegative().optional(),
    reason: z.string().min(1).max(64),
  })
  .strict();

/**
 * The agent's word on teleoperation, sent on every (re)connection: whether a session is open right now and, if so,
 * since when. A dropped link does not end a session; the cloud holds it unconfirmed until this statement confirms it
 * (active, same `since`), closes it (not active) or opens it (active, none open in the cloud).
 */
export const TeleoperationStateData = z
  .object({
    active: z.boolean(),
    /** While active: when the session began, the `occurredAt` of its TeleoperationStarted (agent's clock). */
    since: isoTimestamp.optional(),
    operatorAddress: operatorAddress.optional(),
    signals: z.array(z.string().min(1).max(32)).max(16).default([]),
    score: z.number().min(0).max(1).optional(),
  })
  .strict();

export const EventsDroppedData = z
  .object({
    /** How many of the oldest queued events the agent dropped because its offline queue was full. */
    count: z.number().int().positive().max(1_000_000_000),
  })
  .strict();

/**
 * A first-boot (fleet provisioning) attempt that failed, reported by the agent once it can talk, i.e. once it is
 * provisioned (the claim certificate may publish nothing but the provisioning requests). One event per failure the
 * agent persisted; `occurredAt` is when it failed (the robot's clock), so a robot that retried its way through reports
 * each reason it met, in order. The private key, the CSR and the ownership token never appear here.
 */
export const ProvisioningFailedData = z
  .object({
    /** The hardware serial the robot provisioned as (its thing is `<model>-<serial>`). */
    serial: Serial,
    /** The named reason (schemas/provisioning.ts PROVISIONING_FAILURE_REASONS), e.g. HOOK_DENIED_ALREADY_CLAIMED. */
    reason: ProvisioningFailureReason,
    /** What the agent saw, for people (an errorMessage, a TLS error); no secret. */
    detail: z.string().max(500).optional(),
    /** The step the agent was at (agent/core/provisioning.ts PROVISIONING_STEPS), e.g. `certificate-issued`. */
    step: z.string().regex(/^[a-z][a-z-]{0,31}$/).optional(),
    /** How many failures in a row this was (1 for the first). */
    attempt: z.number().int().positive().max(1_000_000).optional(),
  })
  .strict();
export type ProvisioningFailedData = z.infer<typeof ProvisioningFailedData>;

/**
 * What the agent reports as a fact. `eventId` is chosen by the agent and kept across redeliveries (offline queue,
 * QoS 1), so the cloud appends each one exactly once.
 */
export const AgentEvent = z.discriminatedUnion('type', [
  z
    .object({ eventId, occurredAt: isoTimestamp, type: z.literal('TeleoperationStarted'), data: TeleoperationStartedData })
    .strict(),
  z
    .object({ eventId, occurredAt: isoTimestamp, type: z.literal('TeleoperationStopped'), data: TeleoperationStoppedData })
    .strict(),
  /** Sent on every (re)connection: the teleoperation state right now (see TeleoperationStateData). */
  z.object({ eventId, occurredAt: isoTimestamp, type: z.literal('TeleoperationState'), data: TeleoperationStateData }).strict(),
  /** Sent once the link is back when the offline queue overflowed: those events are gone for good. */
  z.object({ eventId, occurredAt: isoTimestamp, type: z.literal('EventsDropped'), data: EventsDroppedData }).strict(),
  /** A first-boot failure the robot met before it was provisioned (see ProvisioningFailedData). */
  z.object({ eventId, occurredAt: isoTimestamp, type: z.literal('ProvisioningFailed'), data: ProvisioningFailedData }).strict(),
  /** A certificate rotation that did not happen; the robot goes on with its current certificate (schemas/rotation.ts). */
  z
    .object({ eventId, occurredAt: isoTimestamp, type: z.literal('CertificateRotationFailed'), data: CertificateRotationFailedData })
    .strict(),
  /** Software updates (schemas/deployments.ts): the installer's facts about a job, and the version it runs. */
  z.object({ eventId, occurredAt: isoTimestamp, type: z.literal('UpdateDeferred'), data: UpdateDeferredData }).strict(),
  z.object({ eventId, occurredAt: isoTimestamp, type: z.literal('UpdateStarted'), data: UpdateStartedData }).strict(),
  z.object({ eventId, occurredAt: isoTimestamp, type: z.literal('UpdateSucceeded'), data: UpdateSucceededData }).strict(),
  z.object({ eventId, occurredAt: isoTimestamp, type: z.literal('UpdateFailed'), data: UpdateFailedData }).strict(),
  /** Sent on every (re)connection, like TeleoperationState: the version under `current` right now. */
  z.object({ eventId, occurredAt: isoTimestamp, type: z.literal('SoftwareState'), data: SoftwareStateData }).strict(),
]);
export type AgentEvent = z.infer<typeof AgentEvent>;

/** At most this many events in one message: a backlog of 100 teleoperation facts is about 30 KB (IoT Core allows 128 KB). */
export const MAX_EVENTS_PER_BATCH = 100;

/**
 * Where a batch sits in the agent's outbox (its on-disk queue). Every event the agent queues gets the next position
 * of its outbox; the cloud keeps, per robot, the outbox id and the last position it handled, and appends an event only
 * when every earlier one of the same outbox is handled (or given up by the agent). So however messages are lost,
 * duplicated or resent, the log holds the outbox's events once each, in the outbox's order.
 */
export const OutboxPosition = z
  .object({
    /** Chosen when the queue is created (a UUID); a new id (a re-imaged robot, a lost queue) starts a new order. */
    id: z
      .string()
      .min(8)
      .max(64)
      .regex(/^[A-Za-z0-9_-]+$/, 'letters, digits, _ and - only (a UUID is ideal)'),
    /** Every event of this outbox up to this position is acknowledged by the cloud or dropped by the agent. */
    after: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
    /** The position of the message's first event; the others follow one by one. */
    first: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  })
  .strict()
  .refine((position) => position.first > position.after, {
    message: 'first must come after `after` (positions up to `after` are settled)',
    path: ['first'],
  });
export type OutboxPosition = z.infer<typeof OutboxPosition>;

/**
 * Events in one message, oldest first: the agent's backlog after being offline, or what it has to say now. With
 * `outbox`, the cloud acknowledges on `cmd/heartbeat/<thing>/ack` (EventsAck) what it handled, and the agent keeps
 * every event on disk until then. Without it (a client that is not our agent) the events are appended in the
 * channel's order, once per eventId.
 */
export const AgentEventBatch = z
  .object({ outbox: OutboxPosition.optional(), events: z.array(AgentEvent).min(1).max(MAX_EVENTS_PER_BATCH) })
  .strict();
export type AgentEventBatch = z.infer<typeof AgentEventBatch>;

/** What the events topic carries: one event, or a batch of them. */
export const AgentEventMessage = z.union([AgentEvent, AgentEventBatch]);
export type AgentEventMessage = z.infer<typeof AgentEventMessage>;

const FieldProblem = z.object({ field: z.string().max(256), message: z.string().max(512) }).strict();

/** An event the cloud refused for good: it will never be in the log, and this says why. */
export const RejectedEvent = z
  .object({
    eventId: z.string().max(200).optional(),
    /** Its outbox position, when it came with one. */
    position: z.number().int().positive().optional(),
    problems: z.array(FieldProblem).min(1).max(20),
  })
  .strict();
export type RejectedEvent = z.infer<typeof RejectedEvent>;

/** At most this many ids or rejections in one acknowledgement (IoT Core's 128 KB payload limit). */
export const MAX_ACK_ITEMS = 500;

/**
 * The cloud's answer to the events it handled, published on `cmd/heartbeat/<thing>/ack` once they are durably in the
 * log (appended, or recognised as already there or as changing nothing) or refused for good. The broker's PUBACK only
 * says that IoT Core took a message; this says the log has it.
 */
export const EventsAck = z
  .object({
    /** Every event of this outbox up to `through` is handled; the agent may forget them. */
    outbox: z.object({ id: OutboxPosition.shape.id, through: z.number().int().nonnegative() }).strict().optional(),
    /**
     * True when a message was refused because an earlier event of the outbox has not arrived (lost on the way): send
     * again from `through` + 1, in order.
     */
    resend: z.boolean().optional(),
    /** Events that came without an outbox position, handled. */
    eventIds: z.array(z.string().max(200)).max(MAX_ACK_ITEMS).optional(),
    rejected: z.array(RejectedEvent).max(MAX_ACK_ITEMS).optional(),
  })
  .strict();
export type EventsAck = z.infer<typeof EventsAck>;

/**
 * The cloud's request for a telemetry sample now, on `cmd/heartbeat/<thing>/report-now` (POST /api/v2/discover sends
 * it to every robot online). Senders may add fields (a timestamp, who asked); only `requestId` matters.
 */
export const ReportNowCommand = z
  .object({
    /** Names the request in the reply and the logs; one discover sends the same id to every robot. */
    requestId: z.string().min(1).max(128).optional(),
  })
  .loose();
export type ReportNowCommand = z.infer<typeof ReportNowCommand>;

/**
 * The agent's answer on `cmd/heartbeat/<thing>/report-now/reply` once the sample is published: the sample itself
 * goes on the telemetry topic like any other, so the dashboard sees it on the live feed.
 */
export const ReportNowReply = z
  .object({
    requestId: z.string().min(1).max(128).optional(),
    /** When the agent published the sample (its clock, ISO 8601). */
    sentAt: isoTimestamp,
  })
  .strict();
export type ReportNowReply = z.infer<typeof ReportNowReply>;
