import { unmarshall, type NativeAttributeValue } from '@aws-sdk/util-dynamodb';
import type { AttributeValue as LambdaAttributeValue, DynamoDBRecord } from 'aws-lambda';
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { z } from 'zod';
import { DomainEvent, TelemetrySample, type RecordedEvent } from '../../schemas/index.js';
import type { RobotHead } from '../app/ports.js';
import type { OutboxMark } from '../domain/outbox-order.js';
import type { RobotState } from '../domain/robot-state.js';

/**
 * The items of the event log table, one codec for writers (the DynamoDB adapter) and readers (stream consumers).
 *
 * - event:  pk robotId, sk seq ≥ 1; the domain event, append-only.
 * - head:   pk robotId, sk 0 (reserved); folded state, lastSeq, revision, latest telemetry sample, and how far the
 *           robot's agent outbox is handled (its mark, see functions/domain/outbox-order.ts).
 * - marker: pk `<robotId>#event#<eventId>`, sk 0; exists once the event is in the log, so an append of a known
 *           eventId fails its condition inside the same transaction. Stream consumers skip markers.
 */
export const HEAD_SEQ = 0;
export const markerKey = (robotId: string, eventId: string) => ({ robotId: `${robotId}#event#${eventId}`, seq: HEAD_SEQ });

export interface EventItem {
  readonly robotId: string;
  readonly seq: number;
  readonly kind: 'event';
  readonly eventId: string;
  readonly type: string;
  readonly version: number;
  readonly at: string;
  readonly recordedAt: string;
  readonly data: Record<string, unknown>;
}

export interface HeadItem {
  readonly robotId: string;
  readonly seq: typeof HEAD_SEQ;
  readonly kind: 'head';
  readonly lastSeq: number;
  readonly revision: number;
  readonly state: RobotState;
  readonly telemetry?: TelemetrySample;
  readonly outbox?: OutboxMark;
  /** True when this write of the head carried a new telemetry sample (stream consumers push it). */
  readonly telemetryChanged: boolean;
  readonly updatedAt: string;
}

/** Proof that an eventId is in the log, and where: the seq it got (the key's `seq` is the reserved 0). */
export interface MarkerItem {
  readonly robotId: string;
  readonly seq: typeof HEAD_SEQ;
  readonly kind: 'marker';
  readonly eventSeq: number;
  readonly recordedAt: string;
}

export function toMarkerItem(recorded: RecordedEvent): MarkerItem {
  return {
    robotId: markerKey(recorded.event.robotId, recorded.event.eventId).robotId,
    seq: HEAD_SEQ,
    kind: 'marker',
    eventSeq: recorded.seq,
    recordedAt: recorded.recordedAt,
  };
}

export function toEventItem(recorded: RecordedEvent): EventItem {
  const { event } = recorded;
  return {
    robotId: event.robotId,
    seq: recorded.seq,
    kind: 'event',
    eventId: event.eventId,
    type: event.type,
    version: event.version,
    at: event.at,
    recordedAt: recorded.recordedAt,
    data: event.data as Record<string, unknown>,
  };
}

// Built once: zod compiles a schema on its first parse, which costs more than the parse itself.
const EventItemBase = z.object({ robotId: z.string(), seq: z.number().int().positive(), recordedAt: z.string() });

/** A stored event item back to a domain event; throws a ZodError naming the field when the item is malformed. */
export function fromEventItem(item: Record<string, unknown>): RecordedEvent {
  const base = EventItemBase.parse(item);
  const event = DomainEvent.parse({
    eventId: item.eventId,
    robotId: item.robotId,
    at: item.at,
    version: item.version,
    type: item.type,
    data: item.data,
  });
  return { seq: base.seq, recordedAt: base.recordedAt, event };
}

export function toHeadItem(head: RobotHead, telemetryChanged: boolean): HeadItem {
  return {
    robotId: head.robotId,
    seq: HEAD_SEQ,
    kind: 'head',
    lastSeq: head.lastSeq,
    revision: head.revision,
    state: head.state,
    ...(head.telemetry ? { telemetry: head.telemetry } : {}),
    ...(head.outbox ? { outbox: head.outbox } : {}),
    telemetryChanged,
    updatedAt: head.updatedAt,
  };
}

const HeadShape = z.object({
  robotId: z.string(),
  lastSeq: z.number().int().nonnegative(),
  revision: z.number().int().nonnegative(),
  state: z.record(z.string(), z.unknown()),
  telemetry: TelemetrySample.optional(),
  outbox: z.object({ id: z.string(), through: z.number().int().nonnegative() }).optional(),
  telemetryChanged: z.boolean().default(false),
  updatedAt: z.string(),
});

export function fromHeadItem(item: Record<string, unknown>): RobotHead & { telemetryChanged: boolean } {
  const head = HeadShape.parse(item);
  return {
    robotId: head.robotId,
    state: head.state as unknown as RobotState,
    lastSeq: head.lastSeq,
    revision: head.revision,
    telemetry: head.telemetry ?? null,
    outbox: head.outbox ?? null,
    updatedAt: head.updatedAt,
    telemetryChanged: head.telemetryChanged,
  };
}

export type StreamItem =
  | { readonly kind: 'event'; readonly recorded: RecordedEvent }
  | { readonly kind: 'head'; readonly head: RobotHead & { telemetryChanged: boolean } }
  | { readonly kind: 'ignored'; readonly why: string };

/**
 * Reads one stream record (NEW_IMAGE) of the event log. Markers and removals are `ignored`; a malformed event or
 * head throws, naming the field, so the consumer reports it as a failed batch item.
 */
export function parseStreamRecord(record: DynamoDBRecord): StreamItem {
  if (record.eventName === 'REMOVE') return { kind: 'ignored', why: 'removal' };
  const image = record.dynamodb?.NewImage;
  if (!image) throw new Error('stream record has no NewImage (the stream view type must be NEW_IMAGE)');
  // A third of the stream is markers: skip them before paying for unmarshall, the bulk of a consumer's parsing time.
  if (image.kind?.S === 'marker') return { kind: 'ignored', why: 'marker' };
  const item = unmarshall(image as Record<string, LambdaAttributeValue> as unknown as Record<string, AttributeValue>) as Record<
    string,
    NativeAttributeValue
  >;
  switch (item.kind) {
    case 'event':
      return { kind: 'event', recorded: fromEventItem(item) };
    case 'head':
      return { kind: 'head', head: fromHeadItem(item) };
    case 'marker':
      return { kind: 'ignored', why: 'marker' };
    default:
      throw new Error(`stream record has unknown kind ${JSON.stringify(item.kind)}`);
  }
}
