import { unmarshall, type NativeAttributeValue } from '@aws-sdk/util-dynamodb';
import type { AttributeValue as LambdaAttributeValue, DynamoDBRecord } from 'aws-lambda';
import type { AttributeValue } from '@aws-sdk/client-dynamodb';
import { z } from 'zod';
import { DomainEvent, LatestTelemetry, type RecordedEvent } from '../../schemas/index.js';
import type { CommandReceipt, RobotHead, StreamItem } from '../app/ports.js';
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
 * - receipt: pk `<robotId>#request#<caller, URI-encoded>#<Idempotency-Key>`, sk 0, kind `marker` (so stream
 *           consumers skip it too); a person's command under a key: what it asked and the answer it got. Its key
 *           space is apart from event markers', so no event id, whoever chose it, can take a person's key.
 */
export const HEAD_SEQ = 0;
export const markerKey = (robotId: string, eventId: string) => ({ robotId: `${robotId}#event#${eventId}`, seq: HEAD_SEQ });
/** A robot id has no `#`, an Idempotency-Key neither, and the caller is URI-encoded: no two receipts share a key. */
export const receiptKey = (robotId: string, callerId: string, key: string) => ({
  robotId: `${robotId}#request#${encodeURIComponent(callerId)}#${key}`,
  seq: HEAD_SEQ,
});

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
  readonly telemetry?: LatestTelemetry;
  readonly outbox?: OutboxMark;
  /** True when this write of the head carried a new telemetry sample (stream consumers push it). */
  readonly telemetryChanged: boolean;
  /** The POST /api/v2/discover this write's sample answers (stream consumers put it on the live feed). */
  readonly telemetryRequestId?: string;
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

export interface ReceiptItem {
  readonly robotId: string;
  readonly seq: typeof HEAD_SEQ;
  readonly kind: 'marker';
  readonly receiptFor: string;
  readonly callerId: string;
  readonly idempotencyKey: string;
  readonly route: string;
  readonly fingerprint: string;
  /** The answer as JSON text: kept byte for byte, whatever DynamoDB's types would make of it. */
  readonly answer: string;
  readonly recordedAt: string;
}

export function toReceiptItem(receipt: CommandReceipt): ReceiptItem {
  return {
    robotId: receiptKey(receipt.robotId, receipt.callerId, receipt.key).robotId,
    seq: HEAD_SEQ,
    kind: 'marker',
    receiptFor: receipt.robotId,
    callerId: receipt.callerId,
    idempotencyKey: receipt.key,
    route: receipt.route,
    fingerprint: receipt.fingerprint,
    answer: JSON.stringify(receipt.answer),
    recordedAt: receipt.recordedAt,
  };
}

const ReceiptShape = z.object({
  receiptFor: z.string(),
  callerId: z.string(),
  idempotencyKey: z.string(),
  route: z.string(),
  fingerprint: z.string(),
  answer: z.string(),
  recordedAt: z.string(),
});

export function fromReceiptItem(item: Record<string, unknown>): CommandReceipt {
  const receipt = ReceiptShape.parse(item);
  return {
    robotId: receipt.receiptFor,
    callerId: receipt.callerId,
    key: receipt.idempotencyKey,
    route: receipt.route,
    fingerprint: receipt.fingerprint,
    answer: JSON.parse(receipt.answer) as unknown,
    recordedAt: receipt.recordedAt,
  };
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

export function toHeadItem(head: RobotHead, telemetryChanged: boolean, telemetryRequestId?: string): HeadItem {
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
    ...(telemetryChanged && telemetryRequestId !== undefined ? { telemetryRequestId } : {}),
    updatedAt: head.updatedAt,
  };
}

const HeadShape = z.object({
  robotId: z.string(),
  lastSeq: z.number().int().nonnegative(),
  revision: z.number().int().nonnegative(),
  state: z.record(z.string(), z.unknown()),
  // A plain sample (heads written before telemetry was merged per metric) reads as a LatestTelemetry too.
  telemetry: LatestTelemetry.optional(),
  outbox: z.object({ id: z.string(), through: z.number().int().nonnegative() }).optional(),
  telemetryChanged: z.boolean().default(false),
  telemetryRequestId: z.string().optional(),
  updatedAt: z.string(),
});

export function fromHeadItem(item: Record<string, unknown>): RobotHead & { telemetryChanged: boolean; telemetryRequestId?: string } {
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
    ...(head.telemetryRequestId !== undefined ? { telemetryRequestId: head.telemetryRequestId } : {}),
  };
}


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
