import { z } from 'zod';
import {
  AgentEvent,
  ingestTopicOf,
  LifecycleEvent,
  MAX_EVENTS_PER_BATCH,
  OutboxPosition,
  RobotId,
  TelemetryMessage,
  type TelemetrySample,
  type IngestKind,
} from '../../../schemas/index.js';
import type { FieldProblem } from '../../platform/validation.js';
import { claimedId, problemsOf, WHOLE_PAYLOAD } from './problems.js';
import { unstorableNumbers } from './storable-numbers.js';
import { readThingMessage } from './thing-message.js';

/**
 * One record of the ingest channel (the Kinesis stream the topic rules feed), read as what it is. The rules add
 * `topic` (where the message came from: its kind and robot) and, for robots' own topics, `thingName`; both are the
 * rules' words, trusted over the body. A record that cannot be read is `invalid`, with every problem named, and is
 * never retried: it could never succeed.
 */
export type ChannelMessage =
  | { readonly kind: 'presence'; readonly robotId: string; readonly presence: LifecycleEvent }
  | {
      readonly kind: 'telemetry';
      readonly robotId: string;
      readonly sample: TelemetrySample;
      /** The POST /api/v2/discover this sample answers (its report-now's requestId). */
      readonly requestId?: string | undefined;
    }
  | {
      readonly kind: 'events';
      readonly robotId: string;
      readonly outbox: OutboxPosition | null;
      readonly events: readonly EventEntry[];
    }
  | {
      readonly kind: 'invalid';
      readonly ingestKind: IngestKind | null;
      readonly robotId: string | null;
      readonly problems: readonly FieldProblem[];
    }
  /** A lifecycle event of a client that is not a robot (a dashboard, an admin tool): not ours to record. */
  | { readonly kind: 'ignored'; readonly clientId: string };

/** An event of a batch: read on its own, so one bad event is refused with its reason and the others still count. */
export type EventEntry =
  | { readonly valid: true; readonly event: AgentEvent }
  | { readonly valid: false; readonly eventId?: string | undefined; readonly problems: readonly FieldProblem[] };

/**
 * How far ahead of the cloud's clock a robot's clock may run. Samples are ordered by the robot's `sampledAt`, so one
 * sample from far in the future (a Pi without a real-time clock, before NTP has synced) would make every later
 * sample look stale and freeze the robot's telemetry and alerts until real time caught up.
 */
export const MAX_CLOCK_AHEAD_MS = 5 * 60_000;
/**
 * The earliest time a robot may give a sample or an event: before it the Pi's clock was surely never set (no
 * real-time clock, no NTP yet, counting from 1970). A fixed date rather than an age, so a robot's offline backlog of
 * any age is still taken.
 */
export const EARLIEST_DEVICE_TIME = '2020-01-01T00:00:00.000Z';

/**
 * Why a robot's timestamp (`sampledAt`, `occurredAt`) cannot be taken, or null: samples and events are bounded the
 * same way, by EARLIEST_DEVICE_TIME and MAX_CLOCK_AHEAD_MS of the cloud's clock.
 */
export function deviceTimeProblem(field: string, at: string, now: Date): FieldProblem | null {
  const ms = Date.parse(at);
  if (ms > now.getTime() + MAX_CLOCK_AHEAD_MS) {
    return {
      field,
      message: `is more than ${MAX_CLOCK_AHEAD_MS / 60_000} minutes ahead of the cloud's clock (${now.toISOString()}); check the robot's time sync`,
    };
  }
  if (!(ms >= Date.parse(EARLIEST_DEVICE_TIME))) {
    return { field, message: `is before ${EARLIEST_DEVICE_TIME}: the robot's clock is not set; check its time sync` };
  }
  return null;
}

const Routed = z.object({ topic: z.string().max(256) }).loose();

const EventsEnvelope = z
  .object({
    thingName: z.unknown(),
    outbox: OutboxPosition.optional(),
    events: z.array(z.unknown()).min(1).max(MAX_EVENTS_PER_BATCH),
  })
  .strict();

export function readChannelMessage(data: unknown, now: Date): ChannelMessage {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    return { kind: 'invalid', ingestKind: null, robotId: null, problems: [{ field: WHOLE_PAYLOAD, message: 'is not a JSON object' }] };
  }
  const routed = Routed.safeParse(data);
  const route = routed.success ? ingestTopicOf(routed.data.topic) : undefined;
  if (!routed.success || !route) {
    return { kind: 'invalid', ingestKind: null, robotId: null, problems: [{ field: 'topic', message: 'is not a topic any rule reads' }] };
  }
  const { topic: _topic, ...payload } = routed.data;
  switch (route.kind) {
    case 'presence':
      return readPresence(payload);
    case 'telemetry':
      return readTelemetry(payload, now);
    case 'events':
      return readEvents(payload, now);
  }
}

function readPresence(payload: Record<string, unknown>): ChannelMessage {
  const parsed = LifecycleEvent.safeParse(payload);
  if (!parsed.success) {
    return { kind: 'invalid', ingestKind: 'presence', robotId: claimedId(payload, 'clientId'), problems: problemsOf(parsed.error) };
  }
  if (!RobotId.safeParse(parsed.data.clientId).success) return { kind: 'ignored', clientId: parsed.data.clientId };
  return { kind: 'presence', robotId: parsed.data.clientId, presence: parsed.data };
}

function readTelemetry(payload: Record<string, unknown>, now: Date): ChannelMessage {
  const message = readThingMessage(payload, TelemetryMessage);
  if (!message.valid) return { kind: 'invalid', ingestKind: 'telemetry', ...message.rejection };
  const timeProblem = deviceTimeProblem('sampledAt', message.body.sampledAt, now);
  if (timeProblem) return { kind: 'invalid', ingestKind: 'telemetry', robotId: message.robotId, problems: [timeProblem] };
  const { requestId, ...sample } = message.body;
  return { kind: 'telemetry', robotId: message.robotId, sample, ...(requestId !== undefined ? { requestId } : {}) };
}

/** One event, or a batch whose events are read one by one. */
function readEvents(payload: Record<string, unknown>, now: Date): ChannelMessage {
  if (!('events' in payload)) {
    const message = readThingMessage(payload, AgentEvent);
    if (!message.valid) return { kind: 'invalid', ingestKind: 'events', ...message.rejection };
    const timeProblem = deviceTimeProblem('occurredAt', message.body.occurredAt, now);
    if (timeProblem) return { kind: 'invalid', ingestKind: 'events', robotId: message.robotId, problems: [timeProblem] };
    return { kind: 'events', robotId: message.robotId, outbox: null, events: [{ valid: true, event: message.body }] };
  }
  const envelope = EventsEnvelope.safeParse(payload);
  const robotId = RobotId.safeParse(payload.thingName);
  if (!envelope.success || !robotId.success) {
    const problems = [
      ...(robotId.success ? [] : [{ field: 'thingName', message: robotId.error.issues[0]?.message ?? 'is not a robot id' }]),
      ...problemsOf(envelope.error),
    ];
    return { kind: 'invalid', ingestKind: 'events', robotId: claimedId(payload, 'thingName'), problems };
  }
  return {
    kind: 'events',
    robotId: robotId.data,
    outbox: envelope.data.outbox ?? null,
    events: envelope.data.events.map((entry) => readEventEntry(entry, now)),
  };
}

function readEventEntry(input: unknown, now: Date): EventEntry {
  const parsed = AgentEvent.safeParse(input);
  const timeProblem = parsed.success ? deviceTimeProblem('occurredAt', parsed.data.occurredAt, now) : null;
  const problems = parsed.success ? [...unstorableNumbers(parsed.data), ...(timeProblem ? [timeProblem] : [])] : problemsOf(parsed.error);
  if (parsed.success && problems.length === 0) return { valid: true, event: parsed.data };
  return { valid: false, eventId: claimedEventId(input), problems };
}

function claimedEventId(input: unknown): string | undefined {
  if (typeof input !== 'object' || input === null) return undefined;
  const eventId = (input as Record<string, unknown>).eventId;
  return typeof eventId === 'string' ? eventId.slice(0, 200) : undefined;
}
