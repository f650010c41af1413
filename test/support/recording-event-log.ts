import type { AppendOutcome, AppendRequest } from '../../functions/app/ports.js';
import { toEventItem, toHeadItem, toMarkerItem } from '../../functions/adapters/event-log-items.js';
import { InMemoryEventLog } from './in-memory-event-log.js';

/** One item write as the table's stream reports it (NEW_IMAGE): an event, an eventId marker, or a head. */
export interface StreamChange {
  readonly eventName: 'INSERT' | 'MODIFY';
  readonly item: Record<string, unknown>;
}

/**
 * The in-memory event log that also records what the table's stream would carry, in write order: the projector's
 * tests and benchmark drive the real command loop (`executeRobotCommand`) against it and feed the recorded stream to
 * the projector, then replay the same log to rebuild.
 */
export class RecordingEventLog extends InMemoryEventLog {
  private pending: StreamChange[] = [];
  eventCount = 0;

  override async append(request: AppendRequest): Promise<AppendOutcome> {
    const outcome = await super.append(request);
    if (outcome.status !== 'appended') return outcome;
    for (const entry of outcome.recorded) this.pending.push({ eventName: 'INSERT', item: { ...toEventItem(entry) } });
    for (const entry of outcome.recorded) this.pending.push({ eventName: 'INSERT', item: { ...toMarkerItem(entry) } });
    this.pending.push({
      eventName: outcome.head.revision === 1 ? 'INSERT' : 'MODIFY',
      item: { ...toHeadItem(outcome.head, request.telemetry !== undefined, request.telemetryRequestId) },
    });
    this.eventCount += outcome.recorded.length;
    return outcome;
  }

  /** The stream changes written since the last call. */
  takeStream(): StreamChange[] {
    const taken = this.pending;
    this.pending = [];
    return taken;
  }
}
