import type { RecordedEvent } from '../../schemas/index.js';
import type { RobotHead } from './ports.js';

/** A head as the stream carries it: whether this write of it brought a new telemetry sample. */
export type StreamHead = RobotHead & { readonly telemetryChanged: boolean };

/** What the projector feeds on: the events and heads of the event log (markers and removals are not read models). */
export type ProjectionItem =
  | { readonly kind: 'event'; readonly recorded: RecordedEvent }
  | { readonly kind: 'head'; readonly head: StreamHead };

/** Events missing between what the read model holds and what arrived (a record set aside as poison, say). */
export interface SequenceGap {
  readonly robotId: string;
  readonly afterSeq: number;
  readonly nextSeq: number;
}

export interface BatchSummary {
  /** Events folded into the read models. */
  readonly applied: number;
  /** Events at or below a robot's last projected seq: redeliveries, ignored. */
  readonly skipped: number;
  readonly gaps: readonly SequenceGap[];
}

/** The read models' writer (PostgreSQL): the stream projector and the rebuild both go through it. */
export interface ReadModelWriter {
  /** Applies a batch of event log items in one transaction: all of it or, on error, none of it. */
  applyBatch(items: readonly ProjectionItem[]): Promise<BatchSummary>;
  /** Empties the read models that a replay of the event log rebuilds. */
  reset(): Promise<void>;
}
