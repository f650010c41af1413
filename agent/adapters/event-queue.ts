import { mkdir, open, readFile, rm, truncate, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { AgentEvent } from '../../schemas/device.js';
import { replaceFileAtomically, syncDirectory } from './durable-file.js';

/**
 * The agent's on-disk outbox: events wait here while the link is down and across agent restarts, and go out oldest
 * first, at least once (the cloud dedupes on eventId, which makes it exactly once in the log).
 *
 * Layout in `directory`:
 * - `journal.jsonl`: append-only, one `{"seq":n,"event":{...}}` per line, fsynced before `enqueue` resolves. Appending
 *   never rewrites what is already there, so a crash can only tear the last line.
 * - `state.json`: `{"acknowledgedSeq":n,"droppedCount":m}`, replaced atomically. Every journal record with
 *   seq ≤ acknowledgedSeq is delivered or dropped. Dropping the oldest and counting the drop is one state write, so the
 *   count can never disagree with what was dropped.
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
  /** Events dropped because the queue was full, not yet reported (survives restarts). */
  droppedCount: number;
  /** Unreadable records skipped when the queue was opened (they stay lost; compaction removes them). */
  corruptRecords: number;
}

const JournalRecord = z.object({ seq: z.number().int().positive(), event: AgentEvent }).strict();
const QueueState = z
  .object({ acknowledgedSeq: z.number().int().nonnegative(), droppedCount: z.number().int().nonnegative() })
  .strict();

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
  private pending: PendingRecord[] = [];
  private pendingBytes = 0;
  private journalBytes = 0;
  /** Lines in the journal that no longer matter (acknowledged, dropped or corrupt): what compaction would save. */
  private obsoleteLines = 0;
  private acknowledgedSeq = 0;
  private lastSeq = 0;
  private droppedCount = 0;
  private corruptRecords = 0;
  /** File operations run one at a time, in call order; `send` runs outside it so enqueue never waits on the link. */
  private tail: Promise<unknown> = Promise.resolve();
  private draining: Promise<number> | undefined;

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
    await this.loadState();
    await this.loadJournal();
    this.journal = await open(this.journalPath, 'a');
    // A journal created just now only survives a power cut once its directory entry is synced too.
    await syncDirectory(this.directory);
    this.phase = 'open';
    await this.serialize(() => this.applyBounds());
  }

  /** Waits for file operations under way, then releases the journal. A drain in flight stops at its next event. */
  async close(): Promise<void> {
    this.phase = 'closed';
    await this.serialize(async () => {
      await this.journal?.close();
      this.journal = undefined;
    });
  }

  /** Resolves once the event is on disk (fsynced). Refuses an invalid event with the field named. */
  async enqueue(input: unknown): Promise<void> {
    const parsed = AgentEvent.safeParse(input);
    if (!parsed.success) {
      throw new InvalidAgentEventError(
        parsed.error.issues.map((issue) => ({ field: issue.path.join('.') || '(event)', message: issue.message })),
      );
    }
    const event = parsed.data;
    await this.serialize(async () => {
      const journal = this.requireJournal();
      const seq = this.lastSeq + 1;
      const line = `${JSON.stringify({ seq, event })}\n`;
      const bytes = Buffer.byteLength(line);
      if (bytes > this.limits.maxBytes) {
        throw new EventQueueError(`event ${event.eventId} takes ${bytes} bytes, more than maxBytes ${this.limits.maxBytes}`);
      }
      try {
        await journal.appendFile(line);
        await journal.datasync();
      } catch (error) {
        // A failed append (disk full) may leave a partial line that the next append would glue onto: cut it off.
        await journal.truncate(this.journalBytes).catch(() => undefined);
        throw new EventQueueError(`could not write event ${event.eventId} to the journal`, { cause: error });
      }
      this.journalBytes += bytes;
      this.lastSeq = seq;
      this.pending.push({ seq, event, bytes });
      this.pendingBytes += bytes;
      await this.applyBounds();
    });
  }

  /**
   * Sends pending events oldest first; each is removed only after `send` resolved. If `send` rejects, draining stops
   * with that error and the event stays at the head for the caller's next attempt (after its backoff). Events enqueued
   * meanwhile are sent in the same drain. A drain already running is joined rather than started twice. Resolves with
   * how many events were delivered.
   */
  drain(send: (event: AgentEvent) => Promise<void>): Promise<number> {
    this.draining ??= this.deliver(send).finally(() => {
      this.draining = undefined;
    });
    return this.draining;
  }

  /**
   * Hands the dropped count to `report` (e.g. a message to the cloud once the link is back) and clears it only after
   * `report` resolved, so a failed report is retried rather than forgotten. Drops that happen meanwhile are kept.
   */
  async reportDropped(report: (droppedCount: number) => Promise<void>): Promise<number> {
    this.assertOpen();
    const count = this.droppedCount;
    if (count === 0) return 0;
    await report(count);
    await this.serialize(async () => {
      this.assertOpen();
      this.droppedCount -= count;
      await this.writeState();
    });
    return count;
  }

  stats(): EventQueueStats {
    return {
      pending: this.pending.length,
      pendingBytes: this.pendingBytes,
      droppedCount: this.droppedCount,
      corruptRecords: this.corruptRecords,
    };
  }

  /**
   * Like `drain`, but hands over up to `maxEvents` of the oldest events at a time (at most `maxBytes` of them
   * serialised, and always at least one), removing them only after `send` resolved: a backlog goes out in few
   * messages, each in order.
   */
  drainBatches(send: (events: AgentEvent[]) => Promise<void>, limits: { maxEvents: number; maxBytes: number }): Promise<number> {
    this.draining ??= this.deliverBatches(send, limits).finally(() => {
      this.draining = undefined;
    });
    return this.draining;
  }

  private async deliverBatches(
    send: (events: AgentEvent[]) => Promise<void>,
    limits: { maxEvents: number; maxBytes: number },
  ): Promise<number> {
    let delivered = 0;
    for (;;) {
      this.assertOpen();
      const batch: PendingRecord[] = [];
      let bytes = 0;
      for (const record of this.pending) {
        if (batch.length >= limits.maxEvents || (batch.length > 0 && bytes + record.bytes > limits.maxBytes)) break;
        batch.push(record);
        bytes += record.bytes;
      }
      const last = batch.at(-1);
      if (last === undefined) return delivered;
      await send(batch.map((record) => record.event));
      await this.serialize(() => this.acknowledge(last.seq));
      delivered += batch.length;
    }
  }

  private async deliver(send: (event: AgentEvent) => Promise<void>): Promise<number> {
    let delivered = 0;
    for (;;) {
      this.assertOpen();
      const head = this.pending[0];
      if (head === undefined) return delivered;
      await send(head.event);
      await this.serialize(() => this.acknowledge(head.seq));
      delivered += 1;
    }
  }

  private async acknowledge(seq: number): Promise<void> {
    this.assertOpen();
    // Already dropped by the bound while it was being sent: it went out after all, nothing left to remove.
    if (seq <= this.acknowledgedSeq) return;
    this.removeOldestThrough(seq);
    await this.writeState();
    await this.compactIfWorthIt();
  }

  /** Drops the oldest events beyond the bounds; the drop and its count are one atomic state write. */
  private async applyBounds(): Promise<void> {
    let dropped = 0;
    while (this.pending.length > this.limits.maxEvents || this.pendingBytes > this.limits.maxBytes) {
      const oldest = this.pending[0];
      if (oldest === undefined) break;
      this.removeOldestThrough(oldest.seq);
      dropped += 1;
    }
    if (dropped === 0) return;
    this.droppedCount += dropped;
    await this.writeState();
    this.log('event queue full: dropped the oldest events', { dropped, droppedCount: this.droppedCount });
    await this.compactIfWorthIt();
  }

  private removeOldestThrough(seq: number): void {
    while (this.pending[0] !== undefined && this.pending[0].seq <= seq) {
      const removed = this.pending.shift() as PendingRecord;
      this.pendingBytes -= removed.bytes;
      this.obsoleteLines += 1;
    }
    this.acknowledgedSeq = seq;
  }

  private async compactIfWorthIt(): Promise<void> {
    if (this.obsoleteLines < this.limits.compactAfter) return;
    const data = this.pending.map(({ seq, event }) => `${JSON.stringify({ seq, event })}\n`).join('');
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

  private async writeState(): Promise<void> {
    const state: z.infer<typeof QueueState> = {
      acknowledgedSeq: this.acknowledgedSeq,
      droppedCount: this.droppedCount,
    };
    await replaceFileAtomically(this.statePath, JSON.stringify(state));
  }

  private async loadState(): Promise<void> {
    const text = await readFile(this.statePath, 'utf8').catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined;
      throw error;
    });
    if (text === undefined) return;
    const parsed = QueueState.safeParse(safeJson(text));
    if (!parsed.success) {
      // Only reachable through outside damage (writes are atomic). Redelivering everything is safe: the cloud dedupes.
      this.log('event queue state unreadable: every journaled event will be sent again', { path: this.statePath });
      return;
    }
    this.acknowledgedSeq = parsed.data.acknowledgedSeq;
    this.lastSeq = parsed.data.acknowledgedSeq;
    this.droppedCount = parsed.data.droppedCount;
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
  }

  private loadRecord(line: string, lineNumber: number): void {
    const parsed = JournalRecord.safeParse(safeJson(line));
    if (!parsed.success || parsed.data.seq <= this.lastSeq) {
      const acknowledged = parsed.success && parsed.data.seq <= this.acknowledgedSeq;
      this.obsoleteLines += 1;
      if (acknowledged) return;
      this.corruptRecords += 1;
      this.log('event queue journal has a corrupt record: skipped it', { path: this.journalPath, lineNumber });
      return;
    }
    const bytes = Buffer.byteLength(line) + 1;
    this.pending.push({ seq: parsed.data.seq, event: parsed.data.event, bytes });
    this.pendingBytes += bytes;
    this.lastSeq = parsed.data.seq;
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
