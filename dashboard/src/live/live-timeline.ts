import type { EventView } from '../../../schemas/index.js';
import type { ApiClient, ApiFailure, Timeline, TimelineSnapshot } from '../contracts.js';
import { fillAfter, mergeEvents, newestSeq } from './timeline-merge.js';

/**
 * One robot's timeline while a view shows it. INVARIANTS (the merge rules are timeline-merge.ts's):
 * - the first page is the newest events (listEvents); live events that arrive before it are held and merged in;
 * - every live event of the robot is merged in by seq (once, in order, newest first);
 * - a hole in the held seqs (a live event whose seq is not the newest + 1, or missed ones) and every reconnect fill
 *   from `eventsAfter` — one fill at a time; a request the running fill covers (after a seq at or above its own) is
 *   dropped, others are folded into one more; a hole still open after a fill (the history API behind the live feed)
 *   is retried FILL_RETRIES times FILL_RETRY_MS apart, then left to the next event or reconnect;
 * - `loadOlder` pages back with the history cursor, one page at a time;
 * - a new snapshot object only when something changed; after `close` nothing changes and no request is made.
 */

export const TIMELINE_PAGE_SIZE = 100;
export const FILL_RETRIES = 5;
export const FILL_RETRY_MS = 1_000;
export const LOAD_RETRY_MS = 3_000;

export interface TimelineDeps {
  readonly api: Pick<ApiClient, 'listEvents' | 'eventsAfter'>;
  setTimer(callback: () => void, ms: number): () => void;
}

export class LiveTimeline implements Timeline {
  #snapshot: TimelineSnapshot = { events: [], hasOlder: false, loadingOlder: false, error: null };
  readonly #listeners = new Set<() => void>();
  readonly #abort = new AbortController();
  readonly #timers = new Set<() => void>();
  #loaded = false;
  #loading = false;
  #cursor: string | null = null;
  #early: EventView[] = [];
  #fillFrom: number | null = null;
  #filling = false;
  #fillingAfter: number | null = null;
  #fillRetries = 0;
  /** A fill that failed, to try again (a reconnect's fill has no hole to find it by). */
  #failedFill: number | null = null;
  #older: Promise<void> | null = null;
  #closed = false;

  constructor(
    readonly robotId: string,
    private readonly deps: TimelineDeps,
    private readonly onClose: (timeline: LiveTimeline) => void = () => {},
  ) {
    void this.#loadFirst();
  }

  getSnapshot = (): TimelineSnapshot => this.#snapshot;

  subscribe = (listener: () => void): (() => void) => {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  };

  /** The robot's live domain events (from the store's frame batch), in arrival order. */
  addLive(events: readonly EventView[]): void {
    if (this.#closed || events.length === 0) return;
    if (!this.#loaded) {
      this.#early.push(...events);
      return;
    }
    this.#merge(events);
    this.#fillHoles();
  }

  /** The live feed came back: whatever happened meanwhile is read from the history. */
  reconnected(): void {
    if (this.#closed) return;
    if (!this.#loaded) {
      void this.#loadFirst();
      return;
    }
    this.#fillRetries = 0;
    this.#requestFill(Math.min(fillAfter(this.#snapshot.events) ?? Infinity, newestSeq(this.#snapshot.events)));
  }

  loadOlder(): Promise<void> {
    if (this.#closed || !this.#loaded || this.#cursor === null) return Promise.resolve();
    this.#older ??= this.#loadOlderPage().finally(() => {
      this.#older = null;
    });
    return this.#older;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#abort.abort();
    for (const cancel of this.#timers) cancel();
    this.#timers.clear();
    this.#listeners.clear();
    this.onClose(this);
  }

  async #loadFirst(): Promise<void> {
    if (this.#loading || this.#closed) return;
    this.#loading = true;
    try {
      const page = await this.deps.api.listEvents(this.robotId, { limit: TIMELINE_PAGE_SIZE, signal: this.#abort.signal });
      if (this.#closed) return;
      this.#loaded = true;
      this.#cursor = page.nextCursor;
      const early = this.#early;
      this.#early = [];
      this.#set({ ...this.#snapshot, events: mergeEvents(page.items, early), hasOlder: page.nextCursor !== null, error: null });
      this.#fillHoles();
    } catch (error) {
      if (this.#closed) return;
      this.#set({ ...this.#snapshot, error: `Could not load the timeline: ${messageOf(error)}` });
      this.#after(LOAD_RETRY_MS, () => void this.#loadFirst());
    } finally {
      this.#loading = false;
    }
  }

  async #loadOlderPage(): Promise<void> {
    const cursor = this.#cursor;
    if (cursor === null) return;
    this.#set({ ...this.#snapshot, loadingOlder: true });
    try {
      const page = await this.deps.api.listEvents(this.robotId, { cursor, limit: TIMELINE_PAGE_SIZE, signal: this.#abort.signal });
      if (this.#closed) return;
      this.#cursor = page.nextCursor;
      this.#set({
        events: mergeEvents(this.#snapshot.events, page.items),
        hasOlder: page.nextCursor !== null,
        loadingOlder: false,
        error: null,
      });
    } catch (error) {
      if (this.#closed) return;
      this.#set({ ...this.#snapshot, loadingOlder: false, error: `Could not load older events: ${messageOf(error)}` });
    }
  }

  #merge(events: readonly EventView[]): void {
    const merged = mergeEvents(this.#snapshot.events, events);
    if (!sameEvents(merged, this.#snapshot.events)) this.#set({ ...this.#snapshot, events: merged });
  }

  /** A hole between held events, or (with no older page) events missing below the oldest held one. */
  #fillHoles(): void {
    const events = this.#snapshot.events;
    const hole = fillAfter(events);
    const oldest = events[events.length - 1]?.seq;
    const missingBelow = !this.#snapshot.hasOlder && oldest !== undefined && oldest > 1 ? 0 : null;
    const after = hole ?? missingBelow;
    if (after !== null) this.#requestFill(after);
  }

  #requestFill(after: number): void {
    // The fill in progress reads everything after its seq: holes above it are covered (or found again when it ends).
    if (this.#fillingAfter !== null && after >= this.#fillingAfter) return;
    this.#fillFrom = Math.min(this.#fillFrom ?? after, after);
    void this.#pumpFill();
  }

  async #pumpFill(): Promise<void> {
    if (this.#filling || this.#closed) return;
    this.#filling = true;
    try {
      while (this.#fillFrom !== null && !this.#closed) {
        const after = this.#fillFrom;
        this.#fillFrom = null;
        this.#fillingAfter = after;
        try {
          const events = await this.#eventsAfter(after);
          if (this.#closed) return;
          this.#merge(events);
          if (this.#failedFill !== null && this.#failedFill >= after) this.#failedFill = null;
          if (this.#snapshot.error !== null) this.#set({ ...this.#snapshot, error: null });
        } catch (error) {
          if (this.#closed) return;
          this.#failedFill = Math.min(this.#failedFill ?? after, after);
          this.#set({ ...this.#snapshot, error: `Could not fill the timeline: ${messageOf(error)}` });
        }
      }
    } finally {
      this.#filling = false;
      this.#fillingAfter = null;
    }
    this.#retryOpenHoles();
  }

  async #eventsAfter(after: number): Promise<EventView[]> {
    try {
      return await this.deps.api.eventsAfter(this.robotId, after, this.#abort.signal);
    } catch (error) {
      // An API without `after` (older than the dashboard) refuses it with a 400: the newest page covers recent holes.
      if (isFailure(error) && error.status === 400) {
        return (await this.deps.api.listEvents(this.robotId, { limit: 500, signal: this.#abort.signal })).items;
      }
      throw error;
    }
  }

  #retryOpenHoles(): void {
    if (this.#closed) return;
    const open = fillAfter(this.#snapshot.events) !== null || this.#failedFill !== null;
    if (!open) {
      this.#fillRetries = 0;
      return;
    }
    if (this.#fillRetries >= FILL_RETRIES) return;
    this.#fillRetries += 1;
    this.#after(FILL_RETRY_MS, () => {
      const failed = this.#failedFill;
      this.#failedFill = null;
      if (failed !== null) this.#requestFill(failed);
      else this.#fillHoles();
    });
  }

  #after(ms: number, callback: () => void): void {
    const cancel = this.deps.setTimer(() => {
      this.#timers.delete(cancel);
      if (!this.#closed) callback();
    }, ms);
    this.#timers.add(cancel);
  }

  #set(next: TimelineSnapshot): void {
    if (this.#closed) return;
    this.#snapshot = next;
    for (const listener of [...this.#listeners]) listener();
  }
}

function sameEvents(a: readonly EventView[], b: readonly EventView[]): boolean {
  return a.length === b.length && a.every((event, i) => event === b[i]);
}

function isFailure(error: unknown): error is ApiFailure {
  return typeof error === 'object' && error !== null && typeof (error as { status?: unknown }).status === 'number';
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
