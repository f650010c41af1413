import type { RecordedEvent } from '../../schemas/index.js';
import type { AppendOutcome, AppendRequest, EventLog, EventLogReplay, EventPage, RobotHead } from '../../functions/app/ports.js';
import { toEventItem, toHeadItem, toMarkerItem } from '../../functions/adapters/event-log-items.js';
import { pageOptions, validateAppend } from '../../functions/adapters/event-log-rules.js';

/** One item write as the table's stream reports it (NEW_IMAGE): an event, an eventId marker, or a head. */
export interface StreamChange {
  readonly eventName: 'INSERT' | 'MODIFY';
  readonly item: Record<string, unknown>;
}

/**
 * An in-memory event log with DynamoEventLog's append rules that also records what the table's stream would carry,
 * in write order: the projector's tests and benchmark drive the real command loop (`executeRobotCommand`) against it
 * and feed the recorded stream to the projector, then replay the same log to rebuild.
 */
export class RecordingEventLog implements EventLog, EventLogReplay {
  private readonly heads = new Map<string, RobotHead>();
  private readonly events = new Map<string, RecordedEvent[]>();
  private readonly eventIds = new Set<string>();
  private pending: StreamChange[] = [];
  eventCount = 0;

  async readHead(robotId: string): Promise<RobotHead | null> {
    return this.heads.get(robotId) ?? null;
  }

  async append(request: AppendRequest): Promise<AppendOutcome> {
    validateAppend(request);
    const current = this.heads.get(request.robotId) ?? null;
    if ((current?.revision ?? null) !== request.expectedRevision || (current?.lastSeq ?? 0) !== request.expectedLastSeq) {
      return { status: 'conflict' };
    }
    const known = request.events.filter((event) => this.eventIds.has(`${event.robotId}#${event.eventId}`));
    if (known.length > 0) return { status: 'duplicate', eventIds: known.map((event) => event.eventId) };

    const recorded = request.events.map((event, index) => ({
      seq: request.expectedLastSeq + 1 + index,
      recordedAt: request.recordedAt,
      event,
    }));
    const head: RobotHead = {
      robotId: request.robotId,
      state: request.state,
      lastSeq: recorded.at(-1)?.seq ?? request.expectedLastSeq,
      revision: (request.expectedRevision ?? 0) + 1,
      telemetry: request.telemetry ?? current?.telemetry ?? null,
      updatedAt: request.recordedAt,
    };
    this.heads.set(head.robotId, head);
    const history = this.events.get(head.robotId) ?? [];
    this.events.set(head.robotId, history);
    for (const entry of recorded) {
      history.push(entry);
      this.eventIds.add(`${entry.event.robotId}#${entry.event.eventId}`);
      this.pending.push({ eventName: 'INSERT', item: { ...toEventItem(entry) } });
    }
    for (const entry of recorded) this.pending.push({ eventName: 'INSERT', item: { ...toMarkerItem(entry) } });
    this.pending.push({
      eventName: current ? 'MODIFY' : 'INSERT',
      item: { ...toHeadItem(head, request.telemetry !== undefined) },
    });
    this.eventCount += recorded.length;
    return { status: 'appended', head, recorded };
  }

  async readEvents(robotId: string, options: { afterSeq?: number; limit?: number } = {}): Promise<EventPage> {
    const { afterSeq, limit } = pageOptions(options);
    const after = (this.events.get(robotId) ?? []).filter((entry) => entry.seq > afterSeq);
    const page = after.slice(0, limit);
    return { events: page, nextAfterSeq: after.length > limit ? (page.at(-1)?.seq ?? null) : null };
  }

  async *replayAll(): AsyncGenerator<RecordedEvent> {
    for (const history of this.events.values()) yield* history;
  }

  async *replayHeads(): AsyncGenerator<RobotHead> {
    yield* this.heads.values();
  }

  /** The stream changes written since the last call. */
  takeStream(): StreamChange[] {
    const taken = this.pending;
    this.pending = [];
    return taken;
  }
}
