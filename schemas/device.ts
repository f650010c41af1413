import { z } from 'zod';

/**
 * Messages a robot's agent publishes. Firmware in other languages validates against the JSON Schema exported from
 * these (`npm run schemas:export`), so every field says what it is.
 */

const percent = z.number().min(0).max(100);
/** ISO 8601 with an offset; bounded so ids derived from it stay within the log's 200-character eventId. */
const isoTimestamp = z.iso.datetime({ offset: true }).max(40);

export const TelemetrySample = z
  .object({
    /** When the agent took the sample (its clock, ISO 8601). */
    sampledAt: isoTimestamp,
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

export const EventsDroppedData = z
  .object({
    /** How many of the oldest queued events the agent dropped because its offline queue was full. */
    count: z.number().int().positive().max(1_000_000_000),
  })
  .strict();

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
  /** Sent once the link is back when the offline queue overflowed: those events are gone for good. */
  z.object({ eventId, occurredAt: isoTimestamp, type: z.literal('EventsDropped'), data: EventsDroppedData }).strict(),
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
