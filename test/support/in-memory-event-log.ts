import type { RecordedEvent } from '../../schemas/index.js';
import type { AppendOutcome, AppendRequest, CommandReceipt, EventLog, EventLogReplay, EventPage, RobotHead } from '../../functions/app/ports.js';
import { pageOptions, validateAppend } from '../../functions/adapters/event-log-rules.js';

/**
 * The event log in memory, for unit tests, with the DynamoDB log's semantics: the same request validation, an
 * append is all or nothing, a known eventId makes it a `duplicate` (checked first, like the markers), a head that
 * moved on makes it a `conflict`, and the head carries the previous telemetry sample over. Every read returns
 * copies, so a test cannot change the log by mutating what it got back.
 */
export class InMemoryEventLog implements EventLog, EventLogReplay {
  private readonly heads = new Map<string, RobotHead>();
  private readonly events = new Map<string, RecordedEvent[]>();
  /** `<robotId>#<eventId>` → the seq the event got. */
  private readonly markers = new Map<string, number>();
  /** `[robotId, callerId, key]` as JSON → the receipt of a person's command under that key. */
  private readonly receipts = new Map<string, CommandReceipt>();

  async readHead(robotId: string): Promise<RobotHead | null> {
    const head = this.heads.get(robotId);
    return head ? structuredClone(head) : null;
  }

  async append(request: AppendRequest): Promise<AppendOutcome> {
    validateAppend(request);
    const current = this.heads.get(request.robotId) ?? null;
    const duplicates = request.events
      .map((event) => event.eventId)
      .filter((eventId) => this.markers.has(`${request.robotId}#${eventId}`));
    if (duplicates.length > 0) return { status: 'duplicate', eventIds: duplicates };
    if ((current?.revision ?? null) !== request.expectedRevision || (current?.lastSeq ?? 0) !== request.expectedLastSeq) {
      return { status: 'conflict' };
    }
    const { receipt } = request;
    if (receipt && this.receipts.has(receiptId(receipt.robotId, receipt.callerId, receipt.key))) return { status: 'conflict' };
    const recorded: RecordedEvent[] = request.events.map((event, index) => ({
      seq: request.expectedLastSeq + 1 + index,
      recordedAt: request.recordedAt,
      event: structuredClone(event),
    }));
    const telemetry = request.telemetry ?? request.previousTelemetry;
    const head: RobotHead = {
      robotId: request.robotId,
      state: structuredClone(request.state),
      lastSeq: recorded.at(-1)?.seq ?? request.expectedLastSeq,
      revision: (request.expectedRevision ?? 0) + 1,
      telemetry: telemetry ? structuredClone(telemetry) : null,
      outbox: request.outbox ? { ...request.outbox } : null,
      updatedAt: request.recordedAt,
    };
    this.heads.set(request.robotId, head);
    this.events.set(request.robotId, [...(this.events.get(request.robotId) ?? []), ...recorded]);
    for (const entry of recorded) this.markers.set(`${request.robotId}#${entry.event.eventId}`, entry.seq);
    if (receipt) this.receipts.set(receiptId(receipt.robotId, receipt.callerId, receipt.key), structuredClone(receipt));
    return { status: 'appended', head: structuredClone(head), recorded: structuredClone(recorded) };
  }

  async hasEvent(robotId: string, eventId: string): Promise<boolean> {
    return this.markers.has(`${robotId}#${eventId}`);
  }

  async readReceipt(robotId: string, callerId: string, key: string): Promise<CommandReceipt | null> {
    const receipt = this.receipts.get(receiptId(robotId, callerId, key));
    return receipt ? structuredClone(receipt) : null;
  }

  async readHeadWithKnown(robotId: string, eventIds: readonly string[]): Promise<{ head: RobotHead | null; known: Set<string> }> {
    return { head: await this.readHead(robotId), known: new Set(eventIds.filter((eventId) => this.markers.has(`${robotId}#${eventId}`))) };
  }

  async readEvents(robotId: string, options: { afterSeq?: number; limit?: number } = {}): Promise<EventPage> {
    const { afterSeq, limit } = pageOptions(options);
    const after = (this.events.get(robotId) ?? []).filter((entry) => entry.seq > afterSeq);
    const page = structuredClone(after.slice(0, limit));
    return { events: page, nextAfterSeq: after.length > limit ? (page.at(-1)?.seq ?? null) : null };
  }

  async *replayAll(): AsyncGenerator<RecordedEvent> {
    for (const events of this.events.values()) yield* structuredClone(events);
  }

  async *replayHeads(): AsyncGenerator<RobotHead> {
    for (const head of this.heads.values()) yield structuredClone(head);
  }
}

function receiptId(robotId: string, callerId: string, key: string): string {
  return JSON.stringify([robotId, callerId, key]);
}
