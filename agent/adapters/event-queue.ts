import { randomUUID } from 'node:crypto';
import { mkdir, open, readFile, rm, truncate, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { AgentEvent, MAX_EVENTS_PER_BATCH, OutboxPosition } from '../../schemas/device.js';
import { replaceFileAtomically, syncDirectory } from './durable-file.js';

/**
 * The agent's on-disk outbox: events wait here while the link is down, across agent restarts, and until the cloud
 * acknowledged them end to end (EventsAck; the broker's PUBACK is not enough). They go out oldest first, at least once,
 * each with its position in the outbox; the cloud handles positions in order and dedupes on eventId, which makes the
 * log hold each event once, in the queue's order (functions/domain/outbox-order.ts).
 *
 * Layout in `directory`:
 * - `journal.jsonl`: append-only, one `{"seq":n,"event":{...}}` per line, fsynced before `enqueue` resolves. Appending
 *   never rewrites what is already there, so a crash can only tear the last line. `seq` is the event's position in
 *   the outbox.
 * - `state.json`: `{"outboxId":"<uuid>","acknowledgedSeq":n,"droppedCount":m,"droppedThrough":d}`, replaced
 *   atomically. The outbox id is made with the queue; a queue whose state is lost gets a new one (its events are sent
 *   again under it, and the cloud's eventId check keeps them from being appended twice). Every journal record with
 *   seq ≤ acknowledgedSeq is acknowledged by the cloud or dropped, and will never be sent again. Dropping the oldest
 *   and counting the drop is one state write, so the count can never disagree with what was dropped; `droppedThrough`
 *   is the highest position dropped, which names the EventsDropped that reports them.
 * - Memory follows the disk: events leave the in-memory pending list only after the state write that settles them,
 *   so `acknowledgedSeq` as the queue reports it (each message's `after`) is always a durable promise.
 * - Compaction rewrites the journal with only the pending records (temp file, fsync, rename). It runs after the state
 *   write, and records carry their own seq, so the old and the new journal mean the same thing: a crash at any step
 *   loses nothing, and a leftover temp file is simply deleted on open.
 */

export class EventQueueError extends Error {
  override readonly name: string = 'EventQueueError';
}

/** An event the queue refused; nothing was written. */
export class InvalidAgentEventError extends EventQueueError {
  override readonly name = 'InvalidAgentEventError';
  constructor(readonly problems: { field: string; message: string }[]) {
    super(`invalid agent event: ${problems.map((p) => `${p.field}: ${p.message}`).join('; ')}`);
  }
}

export const EventQueueLimits = z
  .object({
    /** Oldest events are dropped (and counted) beyond this many pending. */
    maxEvents: z.number().int().positive().default(10_000),
    /** …or beyond this many journal bytes pending; keeps the SD card and the memory copy bounded. */
    maxBytes: z.number().int().positive().default(4 * 1024 * 1024),
    /** Rewrite the journal once this many delivered/dropped/corrupt lines sit in it. */
    compactAfter: z.number().int().positive().default(500),
  })
  .strict();
export type EventQueueLimits = z.input<typeof EventQueueLimits>;

/** Warnings about what was found on disk (torn or corrupt records, unreadable state). */
export type EventQueueLog = (message: string, details: Record<string, unknown>) => void;

export interface EventQueueOptions extends EventQueueLimits {
  directory: string;
  log?: EventQueueLog;
}

export interface EventQueueStats {
  pending: number;
  pendingBytes: number;
  /** Events dropped because the queue was full, not yet put in an EventsDropped (survives restarts). */
  droppedCount: number;
  /** Unreadable records skipped when the queue was opened (they stay lost; compaction removes them). */
  corruptRecords: number;
  /** Every position up to here is acknowledged or dropped (durably). */
  acknowledgedSeq: number;
  /** The position of the newest event queued. */
  lastSeq: number;
}

/** How much one message may carry: MAX_EVENTS_PER_BATCH events, and well under IoT Core's 128 KB payload. */
export interface BatchLimits {
  readonly maxEvents: number;
  readonly maxBytes: number;
}
export const DEFAULT_BATCH_LIMITS: BatchLimits = Object.freeze({ maxEvents: MAX_EVENTS_PER_BATCH, maxBytes: 96 * 1024 });

/** Events at consecutive positions, ready to publish as an AgentEventBatch (`{ outbox, events }`). */
export interface OutboxBatch {
  readonly outbox: OutboxPosition;
  /** The position of the last event. */
  readonly last: number;
  readonly events: AgentEvent[];
}

/** What a sender needs to know of the queue (agent/core/outbox-delivery.ts OutboxView). */
export interface OutboxSnapshot {
  readonly outboxId: string;
  /** = acknowledgedSeq: never sent again. */
  readonly settledThrough: number;
  /** The last position that can be sent now: the newest, or the last before a hole left by a corrupt record. */
  readonly sendableThrough: number;
}

/**
 * The eventId of the EventsDropped reporting drops up to position `droppedThrough`: the same after a crash between
 * its journal append and the state write that clears the count, so the cloud's eventId check keeps it once.
 */
export function droppedEventId(outboxId: string, droppedThrough: number): string {
  return `dropped-${outboxId}-${droppedThrough}`;
}

const JournalRecord = z.object({ seq: z.number().int().positive(), event: AgentEvent }).strict();
const QueueState = z
  .object({
    /** Missing in queues written before outbox ids existed: they get one on open. */
    outboxId: OutboxPosition.shape.id.optional(),
    acknowledgedSeq: z.number().int().nonnegative(),
    droppedCount: z.number().int().nonnegative(),
    droppedThrough: z.number().int().nonnegative().optional(),
  })
  .strict();

interface PersistedState {
  outboxId: string;
  acknowledgedSeq: number;
  droppedCount: number;
  droppedThrough: number;
}

interface PendingRecord {
  seq: number;
  event: AgentEvent;
  bytes: number;
}

const NEWLINE = 0x0a;

export class EventQueue {
  private readonly directory: string;
  private readonly journalPath: string;
  private readonly statePath: string;
  private readonly limits: z.output<typeof EventQueueLimits>;
  private readonly log: EventQueueLog;

  private journal: FileHandle | undefined;
  private phase: 'new' | 'open' | 'closed' = 'new';
  /** Oldest first, seq ascending; consecutive except at `holes`. */
  private pending: PendingRecord[] = [];
  /** Seqs of pending records followed by a missing position (a corrupt record skipped on open), ascending. */
  private holes: number[] = [];
  private pendingBytes = 0;
  private journalBytes = 0;
  /** Lines in the journal that no longer matter (acknowledged, dropped or corrupt): what compaction would save. */
  private obsoleteLines = 0;
  private state: PersistedState = { outboxId: '', acknowledgedSeq: 0, droppedCount: 0, droppedThrough: 0 };
  private lastSeq = 0;
  private corruptRecords = 0;
  /** File operations run one at a time, in call order. */
  private tail: Promise<unknown> = Promise.resolve();

  constructor(options: EventQueueOptions) {
    const { directory, log, ...limits } = options;
    this.directory = directory;
    this.journalPath = join(directory, 'journal.jsonl');
    this.statePath = join(directory, 'state.json');
    this.limits = EventQueueLimits.parse(limits);
    this.log = log ?? ((message, details) => console.warn(message, details));
  }

  /** Loads what a previous run left: drops a torn last line, skips corrupt ones, re-applies the bounds. */
  async open(): Promise<void> {
    if (this.phase !== 'new') throw new EventQueueError('the event queue was already opened');
    await mkdir(this.directory, { recursive: true });
    // Left by a crash mid-compaction or mid-state-write; the file it was meant to replace is still whole.
    await rm(`${this.journalPath}.tmp`, { force: true });
    await rm(`${this.statePath}.tmp`, { force: true });
    const loaded = await this.loadState();
    await this.loadJournal();
    this.journal = await open(this.journalPath, 'a');
    // A journal created just now only survives a power cut once its directory entry is synced too.
    await syncDirectory(this.directory);
    this.phase = 'open';
    await this.serialize(async () => {
      if (!loaded) await this.writeState(this.state);
      await this.applyBounds();
      await this.settleReportedDrops();
    });
  }

  /** Waits for file operations under way, then releases the journal. */
  async close(): Promise<void> {
    this.phase = 'closed';
    await this.serialize(async () => {
      await this.journal?.close();
      this.journal = undefined;
    });
  }

  /** This queue's outbox id (fixed while it is open). */
  get outboxId(): string {
    this.assertOpen();
    return this.state.outboxId;
  }

  /**
   * Resolves with the event's position once it is on disk (fsynced). Refuses an invalid event with the field named.
   * If the queue is full, the oldest events are dropped and counted.
   */
  async enqueue(input: unknown): Promise<number> {
    const parsed = AgentEvent.safeParse(input);
    if (!parsed.success) {
      throw new InvalidAgentEventError(
        parsed.error.issues.map((issue) => ({ field: issue.path.join('.') || '(event)', message: issue.message })),
      );
    }
    const event = parsed.data;
    return this.serialize(async () => {
      const record = this.recordFor(event);
      if (record.bytes > this.limits.maxBytes) {
        throw new EventQueueError(`event ${event.eventId} takes ${record.bytes} bytes, more than maxBytes ${this.limits.maxBytes}`);
      }
      await this.append(record);
      await this.applyBounds();
      return record.seq;
    });
  }

  /** Where the outbox stands, for the sender. */
  snapshot(): OutboxSnapshot {
    this.assertOpen();
    const front = this.pending[0];
    const hole = front === undefined ? undefined : this.holes.find((seq) => seq >= front.seq);
    return {
      outboxId: this.state.outboxId,
      settledThrough: this.state.acknowledgedSeq,
      sendableThrough: hole ?? this.lastSeq,
    };
  }

  /**
   * The pending events from position `first` on, oldest first, at consecutive positions, at most `limits.maxEvents`
   * and `limits.maxBytes` of journal records (always at least one). Nothing is removed: events stay until
   * `acknowledge`. Undefined when no pending event has position `first` (settled already, not queued yet, or lost
   * to a corrupt record).
   */
  batchFrom(first: number, limits: BatchLimits = DEFAULT_BATCH_LIMITS): OutboxBatch | undefined {
    this.assertOpen();
    const start = this.indexOf(first);
    if (start === undefined) return undefined;
    const events: AgentEvent[] = [];
    let bytes = 0;
    let last = first - 1;
    for (let index = start; index < this.pending.length; index += 1) {
      const record = this.pending[index] as PendingRecord;
      if (record.seq !== last + 1) break;
      if (events.length >= limits.maxEvents || (events.length > 0 && bytes + record.bytes > limits.maxBytes)) break;
      events.push(record.event);
      bytes += record.bytes;
      last = record.seq;
    }
    return { outbox: { id: this.state.outboxId, after: this.state.acknowledgedSeq, first }, last, events };
  }

  /**
   * The cloud has every event of outbox `outboxId` up to position `through`: removes them (one atomic state write).
   * An acknowledgement for another outbox, a late one or a duplicate changes nothing. Resolves with how many events
   * were removed.
   */
  acknowledge(outboxId: string, through: number): Promise<number> {
    return this.serialize(async () => {
      this.assertOpen();
      if (outboxId !== this.state.outboxId || through <= this.state.acknowledgedSeq) return 0;
      const count = this.countThrough(through);
      // Beyond anything queued only if the cloud knows positions this queue forgot (a restored backup): new events
      // must come after them, or the cloud would take them for settled.
      this.lastSeq = Math.max(this.lastSeq, through);
      await this.commit({ ...this.state, acknowledgedSeq: this.settledAfterRemoving(count, through) }, count);
      return count;
    });
  }

  /**
   * Turns the dropped count into an `EventsDropped { count }` event at the end of the queue and clears the count, in
   * one serialized operation, so it is acknowledged end to end like any other event. Its eventId is
   * `droppedEventId(outboxId, highest dropped position)`. If the queue is full, the oldest events make room and are
   * counted in it. Resolves with the event, or undefined when nothing was dropped.
   */
  reportDropped(occurredAt: string): Promise<AgentEvent | undefined> {
    return this.serialize(async () => {
      this.assertOpen();
      if (this.state.droppedCount === 0) return undefined;
      // Room for the report: the oldest make way and are counted in it (never the report itself, or it would churn).
      let dropping = 0;
      let report = this.droppedReport(occurredAt, 0);
      while (dropping < this.pending.length && !this.fits(report, dropping)) {
        dropping += 1;
        report = this.droppedReport(occurredAt, dropping);
      }
      await this.append(report.record);
      const droppedThrough = dropping > 0 ? (this.pending[dropping - 1] as PendingRecord).seq : this.state.droppedThrough;
      const acknowledgedSeq = dropping > 0 ? this.settledAfterRemoving(dropping, droppedThrough) : this.state.acknowledgedSeq;
      await this.commit({ ...this.state, acknowledgedSeq, droppedCount: 0, droppedThrough }, dropping);
      return report.record.event;
    });
  }

  stats(): EventQueueStats {
    return {
      pending: this.pending.length,
      pendingBytes: this.pendingBytes,
      droppedCount: this.state.droppedCount,
      corruptRecords: this.corruptRecords,
      acknowledgedSeq: this.state.acknowledgedSeq,
      lastSeq: this.lastSeq,
    };
  }

  private droppedReport(occurredAt: string, dropping: number): { record: PendingRecord } {
    const droppedThrough = dropping > 0 ? (this.pending[dropping - 1] as PendingRecord).seq : this.state.droppedThrough;
    const event = AgentEvent.parse({
      eventId: droppedEventId(this.state.outboxId, droppedThrough),
      occurredAt,
      type: 'EventsDropped',
      data: { count: this.state.droppedCount + this.eventsIn(dropping) },
    });
    return { record: this.recordFor(event) };
  }

  /** Whether `report` fits once the `dropping` oldest are gone. */
  private fits(report: { record: PendingRecord }, dropping: number): boolean {
    const droppedBytes = this.pending.slice(0, dropping).reduce((sum, record) => sum + record.bytes, 0);
    return (
      this.pending.length - dropping + 1 <= this.limits.maxEvents &&
      this.pendingBytes - droppedBytes + report.record.bytes <= this.limits.maxBytes
    );
  }

  private recordFor(event: AgentEvent): PendingRecord {
    const seq = this.lastSeq + 1;
    return { seq, event, bytes: Buffer.byteLength(this.lineFor(seq, event)) };
  }

  private lineFor(seq: number, event: AgentEvent): string {
    return `${JSON.stringify({ seq, event })}\n`;
  }

  /** Appends and fsyncs one record; only then is it pending. */
  private async append(record: PendingRecord): Promise<void> {
    const journal = this.requireJournal();
    try {
      await journal.appendFile(this.lineFor(record.seq, record.event));
      await journal.datasync();
    } catch (error) {
      // A failed append (disk full) may leave a partial line that the next append would glue onto: cut it off.
      await journal.truncate(this.journalBytes).catch(() => undefined);
      throw new EventQueueError(`could not write event ${record.event.eventId} to the journal`, { cause: error });
    }
    this.journalBytes += record.bytes;
    this.lastSeq = record.seq;
    this.pending.push(record);
    this.pendingBytes += record.bytes;
  }

  /** Drops the oldest events beyond the bounds; the drop and its count are one atomic state write. */
  private async applyBounds(): Promise<void> {
    let dropping = 0;
    let bytes = this.pendingBytes;
    while (this.pending.length - dropping > this.limits.maxEvents || bytes > this.limits.maxBytes) {
      const oldest = this.pending[dropping];
      if (oldest === undefined) break;
      bytes -= oldest.bytes;
      dropping += 1;
    }
    if (dropping === 0) return;
    const droppedThrough = (this.pending[dropping - 1] as PendingRecord).seq;
    await this.commit(
      {
        ...this.state,
        acknowledgedSeq: this.settledAfterRemoving(dropping, droppedThrough),
        droppedCount: this.state.droppedCount + this.eventsIn(dropping),
        droppedThrough,
      },
      dropping,
    );
    this.log('event queue full: dropped the oldest events', { dropped: dropping, droppedCount: this.state.droppedCount });
  }

  /**
   * How many events the `count` oldest records stand for: a dropped EventsDropped stands for the events it counted
   * (its count goes into the next report rather than being lost; if it was already on its way and arrives anyway,
   * those events are counted twice, as any dropped event that was in flight may arrive anyway).
   */
  private eventsIn(count: number): number {
    return this.pending
      .slice(0, count)
      .reduce((sum, record) => sum + (record.event.type === 'EventsDropped' ? record.event.data.count : 1), 0);
  }

  /**
   * A crash between an EventsDropped's journal append and the state write that clears the count leaves both: the
   * report is in the journal under the id the state names, so the count is cleared now rather than reported twice.
   */
  private async settleReportedDrops(): Promise<void> {
    if (this.state.droppedCount === 0) return;
    const eventId = droppedEventId(this.state.outboxId, this.state.droppedThrough);
    if (!this.pending.some((record) => record.event.eventId === eventId)) return;
    await this.commit({ ...this.state, droppedCount: 0 }, 0);
  }

  /** How many of the oldest pending records have a position up to `through`. */
  private countThrough(through: number): number {
    let count = 0;
    while (count < this.pending.length && (this.pending[count] as PendingRecord).seq <= through) count += 1;
    return count;
  }

  /**
   * acknowledgedSeq once the `count` oldest are gone and everything up to `through` is settled: positions lost to
   * corrupt records between them and the next pending event are settled with them (they can never be sent).
   */
  private settledAfterRemoving(count: number, through: number): number {
    const settled = Math.max(this.state.acknowledgedSeq, through);
    const front = this.pending[count];
    return front !== undefined && front.seq > settled + 1 ? front.seq - 1 : settled;
  }

  /** Writes `next` atomically, then (and only then) forgets the `remove` oldest pending records. */
  private async commit(next: PersistedState, remove: number): Promise<void> {
    await this.writeState(next);
    this.state = next;
    const removed = this.pending.splice(0, remove);
    for (const record of removed) this.pendingBytes -= record.bytes;
    this.obsoleteLines += removed.length;
    const front = this.pending[0];
    this.holes = front === undefined ? [] : this.holes.filter((seq) => seq >= front.seq);
    await this.compactIfWorthIt();
  }

  private indexOf(seq: number): number | undefined {
    let low = 0;
    let high = this.pending.length - 1;
    while (low <= high) {
      const middle = (low + high) >>> 1;
      const found = (this.pending[middle] as PendingRecord).seq;
      if (found === seq) return middle;
      if (found < seq) low = middle + 1;
      else high = middle - 1;
    }
    return undefined;
  }

  private async compactIfWorthIt(): Promise<void> {
    if (this.obsoleteLines < this.limits.compactAfter) return;
    const data = this.pending.map(({ seq, event }) => this.lineFor(seq, event)).join('');
    const stale = this.requireJournal();
    try {
      await replaceFileAtomically(this.journalPath, data);
      this.journalBytes = this.pendingBytes;
      this.obsoleteLines = 0;
    } finally {
      // Whether the rename happened or not, the file under the journal's name is complete: append to that one.
      await stale.close();
      this.journal = await open(this.journalPath, 'a');
    }
  }

  private async writeState(state: PersistedState): Promise<void> {
    await replaceFileAtomically(this.statePath, JSON.stringify(state satisfies z.infer<typeof QueueState>));
  }

  /** Resolves whether a usable state with an outbox id was found; otherwise a new outbox id is made. */
  private async loadState(): Promise<boolean> {
    const fresh: PersistedState = { outboxId: randomUUID(), acknowledgedSeq: 0, droppedCount: 0, droppedThrough: 0 };
    this.state = fresh;
    const text = await readFile(this.statePath, 'utf8').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw error;
    });
    if (text === undefined) return false;
    const parsed = QueueState.safeParse(safeJson(text));
    if (!parsed.success) {
      // Only reachable through outside damage (writes are atomic). Redelivering everything under a new outbox id is
      // safe: the cloud dedupes on eventId.
      this.log('event queue state unreadable: every journaled event will be sent again under a new outbox id', {
        path: this.statePath,
      });
      return false;
    }
    const { outboxId, acknowledgedSeq, droppedCount, droppedThrough } = parsed.data;
    this.state = {
      outboxId: outboxId ?? fresh.outboxId,
      acknowledgedSeq,
      droppedCount,
      droppedThrough: droppedThrough ?? acknowledgedSeq,
    };
    this.lastSeq = acknowledgedSeq;
    return outboxId !== undefined;
  }

  private async loadJournal(): Promise<void> {
    const content = await readFile(this.journalPath).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return Buffer.alloc(0);
      throw error;
    });
    const completeBytes = content.lastIndexOf(NEWLINE) + 1;
    if (completeBytes < content.length) {
      // The process died mid-append: that enqueue never resolved, so nobody was promised this event.
      this.log('event queue journal ends in a torn record: discarded it', {
        path: this.journalPath,
        discardedBytes: content.length - completeBytes,
      });
      await truncate(this.journalPath, completeBytes);
    }
    this.journalBytes = completeBytes;
    const lines = content.subarray(0, completeBytes).toString('utf8').split('\n').slice(0, -1);
    lines.forEach((line, index) => this.loadRecord(line, index + 1));
    // Positions before the first readable pending record can never be sent (acknowledged, or lost to corruption).
    const front = this.pending[0];
    if (front !== undefined && front.seq > this.state.acknowledgedSeq + 1) {
      this.state = { ...this.state, acknowledgedSeq: front.seq - 1 };
    }
  }

  private loadRecord(line: string, lineNumber: number): void {
    const parsed = JournalRecord.safeParse(safeJson(line));
    if (!parsed.success || parsed.data.seq <= this.lastSeq) {
      const acknowledged = parsed.success && parsed.data.seq <= this.state.acknowledgedSeq;
      this.obsoleteLines += 1;
      if (acknowledged) return;
      this.corruptRecords += 1;
      this.log('event queue journal has a corrupt record: skipped it', { path: this.journalPath, lineNumber });
      return;
    }
    const { seq, event } = parsed.data;
    const previous = this.pending.at(-1);
    if (previous !== undefined && seq > previous.seq + 1) this.holes.push(previous.seq);
    const bytes = Buffer.byteLength(line) + 1;
    this.pending.push({ seq, event, bytes });
    this.pendingBytes += bytes;
    this.lastSeq = seq;
  }

  private assertOpen(): void {
    if (this.phase !== 'open') throw new EventQueueError('the event queue is not open');
  }

  /** Only inside serialized operations, where compaction cannot be swapping the handle. */
  private requireJournal(): FileHandle {
    this.assertOpen();
    if (this.journal === undefined) throw new EventQueueError('the event queue journal is not open');
    return this.journal;
  }

  private serialize<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.tail.then(operation);
    this.tail = result.catch(() => undefined);
    return result;
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
