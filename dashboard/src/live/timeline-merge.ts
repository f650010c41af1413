import type { EventView } from '../../../schemas/index.js';

/**
 * A robot's timeline as pure data: events newest first, each seq once. A robot's log numbers its events 1, 2, 3, …
 * with no holes, so a hole between two held events means something was missed (a live message lost in a reconnect,
 * or the history API behind the live feed) and is filled from `eventsAfter`. INVARIANTS:
 * - `mergeEvents` returns every seq of both inputs exactly once, newest first, whatever their order or overlap;
 * - for a seq held twice, the history API's record (it has an eventId) wins over the live feed's (it has none);
 *   between two of the same kind, the one already held stays (an event never changes);
 * - `fillAfter` names the seq after which the history must be read so every hole is covered, or null if none.
 */

export function mergeEvents(held: readonly EventView[], incoming: readonly EventView[]): EventView[] {
  if (incoming.length === 0) return [...held];
  const bySeq = new Map<number, EventView>();
  for (const event of held) keep(bySeq, event);
  for (const event of incoming) keep(bySeq, event);
  return [...bySeq.values()].sort((a, b) => b.seq - a.seq);
}

function keep(bySeq: Map<number, EventView>, event: EventView): void {
  const present = bySeq.get(event.seq);
  if (present === undefined || (present.eventId === '' && event.eventId !== '')) bySeq.set(event.seq, event);
}

/** The newest seq held, or 0. */
export function newestSeq(events: readonly EventView[]): number {
  return events[0]?.seq ?? 0;
}

/**
 * Given events newest first (as mergeEvents returns them): the seq of the event just below the OLDEST hole, so one
 * `eventsAfter(thatSeq)` brings every missing event; null when the held events are consecutive.
 */
export function fillAfter(events: readonly EventView[]): number | null {
  let after: number | null = null;
  for (let i = 0; i + 1 < events.length; i += 1) {
    const newer = events[i]!;
    const older = events[i + 1]!;
    if (newer.seq - older.seq > 1) after = older.seq;
  }
  return after;
}
