import type { DomainEvent, LatestTelemetry, RejectedEvent } from '../../../schemas/index.js';
import { mergeTelemetry } from '../../domain/latest-telemetry.js';
import { markBefore, verdictFor, type OutboxMark } from '../../domain/outbox-order.js';
import { decide, type RobotCommand } from '../../domain/robot-decider.js';
import { evolve, initialRobotState, type RobotState } from '../../domain/robot-state.js';
import type { RobotHead } from '../ports.js';
import type { ChannelMessage } from './channel-message.js';

/** What a robot sends that is about the robot (not invalid, not someone else's). */
export type RobotMessage = Extract<ChannelMessage, { kind: 'presence' | 'telemetry' | 'events' }>;

/**
 * An append takes at most 49 events (event log rules); one message's command decides at most 4 (an alert per
 * metric), so a chunk is cut once it holds this many.
 */
export const MAX_EVENTS_PER_CHUNK = 45;

/** One append's worth of a robot's batch: written in one transaction, or not at all. */
export interface Chunk {
  readonly events: readonly DomainEvent[];
  /** The robot's state after these events. */
  readonly state: RobotState;
  /** The telemetry the head should hold (merged per metric), when this chunk brought a sample that changed it. */
  readonly telemetry: LatestTelemetry | undefined;
  /** The POST /api/v2/discover a sample of this chunk answered (the live feed's RobotTelemetry carries it). */
  readonly telemetryRequestId?: string | undefined;
  readonly outbox: OutboxMark | null;
  /** Every message up to this index has all its effects in this chunk or an earlier one (-1: none yet). */
  readonly completes: number;
  /** What the robot is told once this chunk is durable. */
  readonly ack: AckParts;
}

export interface AckParts {
  /** Ids of events that came without an outbox position and are now in the log (or already were). */
  readonly eventIds: readonly string[];
  readonly rejected: readonly RejectedEvent[];
  /** A message was refused because an earlier event of its outbox has not arrived. */
  readonly resend: boolean;
}

/**
 * One robot's messages from one batch of the ingest channel, decided in order against its head and cut into chunks
 * of one transaction each. Pure: the driver (ingest-channel.ts) reads the head and the known eventIds, writes the
 * chunks and, when a write finds the head moved (a person's command landed in between), starts a new RobotBatch
 * from the first message not yet written.
 *
 * INVARIANTS
 * - Messages are applied in channel order; every chunk's `state` is the head's state folded with every event of
 *   that chunk and the chunks before it, so chunks must be written in order, each on the head the previous produced.
 * - An eventId already in the log (`known`) or decided earlier in this batch is never decided again, so a message
 *   the channel delivers twice appends nothing the second time.
 * - An event with an outbox position is handled only at the outbox mark's next position (outbox-order.ts); the mark
 *   in a chunk covers exactly the events handled up to the end of that chunk, so an acknowledgement built from a
 *   written chunk never claims more than the log holds.
 * - Telemetry is merged per metric (domain/latest-telemetry.ts): a sample updates only the metrics it carries newer
 *   than the head's; one that updates nothing and is no newer than the newest seen is stale and changes nothing.
 */
export class RobotBatch {
  private state: RobotState;
  private mark: OutboxMark | null;
  private latestTelemetry: LatestTelemetry | null;
  private readonly known: Set<string>;
  private readonly ready: Chunk[] = [];
  private events: DomainEvent[] = [];
  private telemetry: LatestTelemetry | undefined;
  private telemetryRequestId: string | undefined;
  private eventIds: string[] = [];
  private rejected: RejectedEvent[] = [];
  private resend = false;

  constructor(head: RobotHead | null, robotId: string, known: ReadonlySet<string>) {
    this.state = head?.state ?? initialRobotState(robotId);
    this.mark = head?.outbox ?? null;
    this.latestTelemetry = head?.telemetry ?? null;
    this.known = new Set(known);
  }

  /** Applies message `index`; chunks that filled up meanwhile wait in `takeReady()`. */
  apply(message: RobotMessage, index: number): void {
    switch (message.kind) {
      case 'presence':
        this.decideAndFold({ type: 'RecordPresence', presence: message.presence });
        break;
      case 'telemetry': {
        const { latest, taken } = mergeTelemetry(this.latestTelemetry, message.sample);
        if (!taken) break;
        this.latestTelemetry = latest;
        this.telemetry = latest;
        if (message.requestId !== undefined) this.telemetryRequestId = message.requestId;
        // Alerts look only at the values this sample brought: an older value it lost to is not news.
        this.decideAndFold({ type: 'RecordTelemetry', sample: taken });
        break;
      }
      case 'events':
        this.applyEvents(message, index);
        break;
    }
    if (this.events.length >= MAX_EVENTS_PER_CHUNK) this.cut(index);
  }

  /** Chunks complete so far, oldest first; each is handed out once. */
  takeReady(): Chunk[] {
    return this.ready.splice(0);
  }

  /** The last chunk (possibly empty) once message `lastIndex` was applied, with every chunk not yet taken. */
  finish(lastIndex: number): Chunk[] {
    this.cut(lastIndex);
    return this.takeReady();
  }

  private applyEvents(message: Extract<RobotMessage, { kind: 'events' }>, index: number): void {
    const { outbox } = message;
    if (outbox) this.mark = markBefore(this.mark, outbox);
    for (const [offset, entry] of message.events.entries()) {
      const position = outbox ? outbox.first + offset : undefined;
      if (position !== undefined && this.mark) {
        const verdict = verdictFor(this.mark, position);
        if (verdict === 'settled') continue;
        if (verdict === 'gap') {
          this.resend = true;
          break;
        }
      }
      if (!entry.valid) {
        this.rejected.push({
          ...(entry.eventId !== undefined ? { eventId: entry.eventId } : {}),
          ...(position !== undefined ? { position } : {}),
          problems: entry.problems.slice(0, 20),
        });
      } else {
        const { eventId } = entry.event;
        if (!this.known.has(eventId)) this.decideAndFold({ type: 'RecordAgentEvent', event: entry.event });
        this.known.add(eventId);
        if (position === undefined) this.eventIds.push(eventId);
      }
      if (position !== undefined && this.mark) this.mark = { id: this.mark.id, through: position };
      // Cut between two events of one message: this message is not complete yet, the one before it is.
      if (this.events.length >= MAX_EVENTS_PER_CHUNK) this.cut(index - 1);
    }
  }

  private decideAndFold(command: RobotCommand): void {
    // Only people's commands ask whether the robot is known; a robot's own messages never do.
    const decided = decide(this.state, command, { known: true }).filter((event) => !this.known.has(event.eventId));
    for (const event of decided) {
      this.state = evolve(this.state, event);
      this.known.add(event.eventId);
    }
    this.events.push(...decided);
  }

  private cut(completes: number): void {
    this.ready.push({
      events: this.events,
      state: this.state,
      telemetry: this.telemetry,
      ...(this.telemetryRequestId !== undefined ? { telemetryRequestId: this.telemetryRequestId } : {}),
      outbox: this.mark,
      completes,
      ack: { eventIds: this.eventIds, rejected: this.rejected, resend: this.resend },
    });
    this.events = [];
    this.telemetry = undefined;
    this.telemetryRequestId = undefined;
    this.eventIds = [];
    this.rejected = [];
    this.resend = false;
  }
}
