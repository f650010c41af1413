import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fillAfter, mergeEvents, newestSeq } from '../../../dashboard/src/live/timeline-merge.js';
import { eventView, liveEventView } from './fixtures.js';

const seqs = (events: readonly { seq: number }[]) => events.map((event) => event.seq);

describe('timeline merge', () => {
  it('keeps every seq once, newest first, whatever the order and overlap', () => {
    const held = [eventView(5), eventView(4), eventView(3)];
    expect(seqs(mergeEvents(held, [eventView(7), eventView(4), eventView(6), eventView(7)]))).toEqual([7, 6, 5, 4, 3]);
    expect(seqs(mergeEvents([], [eventView(1), eventView(3), eventView(2)]))).toEqual([3, 2, 1]);
  });

  it("prefers the history API's record of an event to the live feed's", () => {
    const merged = mergeEvents([liveEventView(8), eventView(7)], [eventView(8)]);
    expect(merged[0]).toEqual(eventView(8));
    const kept = mergeEvents([eventView(8)], [liveEventView(8)]);
    expect(kept[0]).toEqual(eventView(8));
  });

  it('finds the seq to fill after: below the oldest hole, or none', () => {
    expect(fillAfter([eventView(5), eventView(4), eventView(3)])).toBeNull();
    expect(fillAfter([eventView(9), eventView(5), eventView(4)])).toBe(5);
    expect(fillAfter([eventView(9), eventView(7), eventView(6), eventView(3)])).toBe(3);
    expect(fillAfter([])).toBeNull();
    expect(newestSeq([eventView(9), eventView(7)])).toBe(9);
    expect(newestSeq([])).toBe(0);
  });

  it('property: any split of a history into held, live (duplicated, shuffled) and fill gives the whole history once, in order', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 60 }),
        fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 60, maxLength: 60 }),
        fc.array(fc.nat(), { minLength: 0, maxLength: 30 }),
        (count, where, duplicates) => {
          const all = Array.from({ length: count }, (_, i) => eventView(i + 1));
          const held = all.filter((_, i) => where[i] === 0).reverse();
          const live = all.filter((_, i) => where[i] === 1).map((event) => liveEventView(event.seq));
          const shuffled = [...live, ...duplicates.map((n) => live[n % Math.max(1, live.length)]).filter((e) => e !== undefined)];
          let timeline = mergeEvents(held, shuffled);
          const after = fillAfter(timeline);
          // The history after that point, as eventsAfter gives it (oldest first).
          const fill = all.filter((event) => event.seq > (after ?? newestSeq(timeline)));
          timeline = mergeEvents(timeline, fill);
          const expected = all.filter((event) => event.seq >= Math.min(...timeline.map((e) => e.seq))).map((e) => e.seq).reverse();
          expect(seqs(timeline)).toEqual(expected);
          expect(fillAfter(timeline)).toBeNull();
          // Every event the history filled in is the history's record.
          for (const event of timeline) if (event.seq > (after ?? Infinity)) expect(event.eventId).not.toBe('');
        },
      ),
    );
  });
});
