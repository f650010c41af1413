import type { RecordedEvent } from '../../schemas/index.js';
import type { RobotHead } from './ports.js';

/** A head as the stream carries it: whether this write of it brought a new telemetry sample. */
export type StreamHead = RobotHead & { readonly telemetryChanged: boolean; readonly telemetryRequestId?: string };

/** What the projector feeds on: the events and heads of the event log (markers and removals are not read models). */
export type ProjectionItem =
  | { readonly kind: 'event'; readonly recorded: RecordedEvent }
  | { readonly kind: 'head'; readonly head: StreamHead };

/**
 * Events missing between what the read model holds for a robot (`afterSeq`) and the next event that arrived
 * (`nextSeq`): seqs afterSeq + 1 … nextSeq - 1. A record set aside as poison leaves one, so does a stream that was
 * trimmed before the projector read it.
 */
export interface SequenceGap {
  readonly robotId: string;
  readonly afterSeq: number;
  readonly nextSeq: number;
}

/**
 * What the event log gave for a gap: every missing event, in seq order; or why it could not (it failed, or holds
 * an item that does not parse). A fill that leaves any seq out counts as not given.
 */
export type GapFill = { readonly events: readonly RecordedEvent[] } | { readonly unavailable: string };

/** Reads the events of a gap from the event log (see fillGapsFrom in project-stream.ts). */
export type GapFiller = (gap: SequenceGap) => Promise<GapFill>;

/** A gap the log could not fill: the robot's events from `nextSeq` on were not applied and must come again. */
export interface HeldGap extends SequenceGap {
  readonly reason: string;
}

/** A gap filled from the log: `events` were read and applied before `nextSeq`. */
export interface FilledGap extends SequenceGap {
  readonly events: number;
}

export interface BatchSummary {
  /** Events folded into the read models (those read from the log included). */
  readonly applied: number;
  /** Events at or below a robot's last projected seq: redeliveries, ignored. */
  readonly skipped: number;
  readonly filled: readonly FilledGap[];
  /** At most one per robot: its first gap that was not filled. Nothing of the robot past it was applied. */
  readonly held: readonly HeldGap[];
}

export interface ApplyOptions {
  /**
   * Reads the events of a gap, inside the transaction (the robot's row is locked, so its last seq cannot move).
   * Without it a gap is never filled: the robot's events past it are held.
   */
  readonly fillGap?: GapFiller;
}

/** The read models' writer (PostgreSQL): the stream projector and the rebuild both go through it. */
export interface ReadModelWriter {
  /**
   * Applies a batch of event log items in one transaction: all of it or, on error, none of it. A robot's events are
   * folded in seq order from its last projected seq and never past a missing one: a gap is filled with `fillGap`
   * first, or the robot's events from the gap on are left out (reported in `held`).
   */
  applyBatch(items: readonly ProjectionItem[], options?: ApplyOptions): Promise<BatchSummary>;
  /** Empties the read models that a replay of the event log rebuilds. */
  reset(): Promise<void>;
}
