import type { DynamoDBRecord } from 'aws-lambda';
import type { DomainEvent, LatestTelemetry, RecordedEvent } from '../../schemas/index.js';
import type { OutboxMark } from '../domain/outbox-order.js';
import type { RobotState } from '../domain/robot-state.js';

/** The head item of a robot in the event log: its folded state and latest telemetry sample. */
export interface RobotHead {
  readonly robotId: string;
  readonly state: RobotState;
  /** Sequence number of the newest event (0 before the first). */
  readonly lastSeq: number;
  /** Grows with every write of the head, telemetry included; appends are conditioned on it. */
  readonly revision: number;
  /** The robot's latest telemetry, merged per metric (domain/latest-telemetry.ts). */
  readonly telemetry: LatestTelemetry | null;
  /** How far the robot's agent outbox is handled (outbox-order.ts); null before its first sequenced message. */
  readonly outbox: OutboxMark | null;
  readonly updatedAt: string;
}

export interface AppendRequest {
  readonly robotId: string;
  /** The head revision the decision was made on; null when the robot has no head yet. */
  readonly expectedRevision: number | null;
  /** Sequence number the decision was made on (the head's lastSeq, 0 for a new robot). */
  readonly expectedLastSeq: number;
  readonly events: readonly DomainEvent[];
  /** The state after folding `events`. */
  readonly state: RobotState;
  /** A new telemetry sample for the head, when the command carried one. */
  readonly telemetry?: LatestTelemetry | undefined;
  /** The POST /api/v2/discover the new sample answers: on the head's stream record only, for the live feed. */
  readonly telemetryRequestId?: string | undefined;
  /** The sample of the head the decision was made on: a Put replaces the whole head, so it is carried over. */
  readonly previousTelemetry: LatestTelemetry | null;
  /**
   * The outbox mark the new head keeps. A Put replaces the whole head, so a writer that does not move the mark passes
   * the one of the head it read (absent: none).
   */
  readonly outbox?: OutboxMark | null | undefined;
  readonly recordedAt: string;
  /**
   * A person's command under an Idempotency-Key: its receipt is written with the events, or nothing is. A receipt
   * already there for the same caller and key makes the append a `conflict`: read it and answer from it.
   */
  readonly receipt?: CommandReceipt | undefined;
}

/**
 * What a person's command under an Idempotency-Key left in a robot's log. Its identity is (robot, caller, key): no
 * other caller and no robot can write it, as it lives apart from event ids. It keeps what was asked, so a reuse of
 * the key for another request is refused, and the answer given, so a retry gets that same answer.
 */
export interface CommandReceipt {
  readonly robotId: string;
  readonly callerId: string;
  readonly key: string;
  /** The route key the command came in on (`POST /api/v2/robots/{id}/fail`). */
  readonly route: string;
  /** A hash of caller, route, robot and canonical body: equal fingerprints, same request. */
  readonly fingerprint: string;
  /** The JSON answer of the first time. */
  readonly answer: unknown;
  readonly recordedAt: string;
}

export type AppendOutcome =
  | { readonly status: 'appended'; readonly head: RobotHead; readonly recorded: readonly RecordedEvent[] }
  /** Another writer changed the head since it was read: read again, decide again. */
  | { readonly status: 'conflict' }
  /** One of the events' ids is already in the log: the command was applied before, so nothing was written. */
  | { readonly status: 'duplicate'; readonly eventIds: readonly string[] };

export interface EventPage {
  readonly events: readonly RecordedEvent[];
  /** Pass as `afterSeq` for the next page; null on the last page. */
  readonly nextAfterSeq: number | null;
}

/** The append-only event log (DynamoDB in AWS and locally). */
export interface EventLog {
  readHead(robotId: string): Promise<RobotHead | null>;
  /** Writes the events, their eventId markers and the new head in one transaction, or nothing. */
  append(request: AppendRequest): Promise<AppendOutcome>;
  readEvents(robotId: string, options?: { afterSeq?: number; limit?: number }): Promise<EventPage>;
  /** Whether an event with this id is in the robot's log (its marker exists). */
  hasEvent(robotId: string, eventId: string): Promise<boolean>;
  /** The receipt of a person's command on this robot under this caller's key, strongly consistent; null if none. */
  readReceipt(robotId: string, callerId: string, key: string): Promise<CommandReceipt | null>;
  /**
   * The robot's head and which of these eventIds are in its log, strongly consistent, in as few reads as the store
   * allows (the ingest consumer's one read per robot and batch; any number of ids).
   */
  readHeadWithKnown(robotId: string, eventIds: readonly string[]): Promise<{ head: RobotHead | null; known: Set<string> }>;
}

/** Reading the whole log back, for rebuilding the read models from it. */
export interface EventLogReplay {
  /** Every event of every robot; each robot's events in seq order, robots one after another in no set order. */
  replayAll(): AsyncGenerator<RecordedEvent>;
  /** Every robot's head: its folded state and latest telemetry sample. */
  replayHeads(): AsyncGenerator<RobotHead>;
}

/**
 * Commands to robots: one MQTT message on `cmd/heartbeat/<robotId>/<request>` (AWS IoT Core's data plane in AWS, the
 * local broker here). Resolves once the broker accepted it; whether the robot was there to hear it is not known.
 */
export interface RobotCommandChannel {
  send(robotId: string, request: string, payload: unknown): Promise<void>;
}

/** An event log stream record, decoded (by the event log's adapter): an event, a head, or an item consumers skip. */
export type StreamItem =
  | { readonly kind: 'event'; readonly recorded: RecordedEvent }
  | { readonly kind: 'head'; readonly head: RobotHead & { telemetryChanged: boolean; telemetryRequestId?: string } }
  | { readonly kind: 'ignored'; readonly why: string };

/** Decodes one stream record; throws, naming the problem, on a record it cannot read. */
export type StreamRecordReader = (record: DynamoDBRecord) => StreamItem;
