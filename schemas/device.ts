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
 * A backlog the agent sends after being offline, oldest first, in one message. IoT Core invokes a rule's Lambda
 * asynchronously per message, so separate messages may be handled in any order; the events of one batch are
 * appended in the order given, which keeps a session's start before its stop.
 */
export const AgentEventBatch = z.object({ events: z.array(AgentEvent).min(1).max(MAX_EVENTS_PER_BATCH) }).strict();
export type AgentEventBatch = z.infer<typeof AgentEventBatch>;

/** What the events topic carries: one event, or a batch of them. */
export const AgentEventMessage = z.union([AgentEvent, AgentEventBatch]);
export type AgentEventMessage = z.infer<typeof AgentEventMessage>;
