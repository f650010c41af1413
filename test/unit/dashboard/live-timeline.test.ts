import { describe, expect, it } from 'vitest';
import { FILL_RETRIES, FILL_RETRY_MS, LiveTimeline, TIMELINE_PAGE_SIZE } from '../../../dashboard/src/live/live-timeline.js';
import { FakeLiveEnvironment, settle } from './fake-live-env.js';
import { badRequest, FakeApi } from './fake-api.js';
import { eventView, liveEventView } from './fixtures.js';

const ROBOT = 'lekiwi-LK0001';
const seqs = (timeline: LiveTimeline) => timeline.getSnapshot().events.map((event) => event.seq);
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => eventView(to - i)); // newest first

function open() {
  const api = new FakeApi();
  const env = new FakeLiveEnvironment();
  const timeline = new LiveTimeline(ROBOT, { api, setTimer: env.setTimer });
  return { api, env, timeline };
}

describe('a robot timeline', () => {
  it('starts with the newest page and keeps live events that came before it', async () => {
    const { api, timeline } = open();
    expect(api.listEventsCalls[0]!.args).toEqual([ROBOT, undefined, TIMELINE_PAGE_SIZE]);
    timeline.addLive([liveEventView(11), liveEventView(10)]);
    api.listEventsCalls[0]!.resolve({ items: range(1, 10), nextCursor: null });
    await settle();
    expect(seqs(timeline)).toEqual([11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1]);
    expect(timeline.getSnapshot().events[1]!.eventId).toBe('event-10'); // the history's record wins
    expect(api.eventsAfterCalls).toHaveLength(0);
  });

  it('appends consecutive live events without asking the API, and notifies once per change', async () => {
    const { api, timeline } = open();
    api.listEventsCalls[0]!.resolve({ items: range(5, 10), nextCursor: 'older' });
    await settle();
    let notified = 0;
    timeline.subscribe(() => (notified += 1));
    timeline.addLive([liveEventView(11), liveEventView(12)]);
    timeline.addLive([liveEventView(12)]); // a duplicate changes nothing
    expect(seqs(timeline)).toEqual([12, 11, 10, 9, 8, 7, 6, 5]);
    expect(notified).toBe(1);
    expect(api.eventsAfterCalls).toHaveLength(0);
  });

  it('fills a gap from eventsAfter, every event once, in order', async () => {
    const { api, timeline } = open();
    api.listEventsCalls[0]!.resolve({ items: range(5, 10), nextCursor: 'older' });
    await settle();
    timeline.addLive([liveEventView(14)]);
    expect(api.eventsAfterCalls.map((call) => call.args)).toEqual([[ROBOT, 10]]);
    timeline.addLive([liveEventView(15)]); // while the fill is running: no second request
    expect(api.eventsAfterCalls).toHaveLength(1);
    api.eventsAfterCalls[0]!.resolve([eventView(11), eventView(12), eventView(13), eventView(14)]);
    await settle();
    expect(seqs(timeline)).toEqual([15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5]);
    expect(api.eventsAfterCalls).toHaveLength(1);
  });

  it('retries a fill while the history is behind the live feed, a bounded number of times', async () => {
    const { api, env, timeline } = open();
    api.listEventsCalls[0]!.resolve({ items: range(1, 3), nextCursor: null });
    await settle();
    timeline.addLive([liveEventView(6)]);
    api.eventsAfterCalls[0]!.resolve([eventView(4)]); // 5 is not in the history yet
    await settle();
    expect(seqs(timeline)).toEqual([6, 4, 3, 2, 1]);
    env.advance(FILL_RETRY_MS);
    expect(api.eventsAfterCalls[1]!.args).toEqual([ROBOT, 4]);
    api.eventsAfterCalls[1]!.resolve([eventView(5), eventView(6)]);
    await settle();
    expect(seqs(timeline)).toEqual([6, 5, 4, 3, 2, 1]);
    expect(timeline.getSnapshot().events.every((event) => event.eventId !== '')).toBe(true);
    env.advance(FILL_RETRY_MS * 10);
    expect(api.eventsAfterCalls).toHaveLength(2);

    timeline.addLive([liveEventView(9)]);
    for (let i = 0; i <= FILL_RETRIES; i += 1) {
      api.eventsAfterCalls[api.eventsAfterCalls.length - 1]!.resolve([]);
      await settle();
      env.advance(FILL_RETRY_MS);
    }
    const calls = api.eventsAfterCalls.length;
    env.advance(FILL_RETRY_MS * 10);
    expect(api.eventsAfterCalls.length).toBe(calls);
    expect(calls).toBe(2 + 1 + FILL_RETRIES);
  });

  it('after a reconnect, reads everything after the newest event held', async () => {
    const { api, timeline } = open();
    api.listEventsCalls[0]!.resolve({ items: range(1, 4), nextCursor: null });
    await settle();
    timeline.reconnected();
    expect(api.eventsAfterCalls[0]!.args).toEqual([ROBOT, 4]);
    api.eventsAfterCalls[0]!.resolve([eventView(5), eventView(6)]);
    await settle();
    expect(seqs(timeline)).toEqual([6, 5, 4, 3, 2, 1]);
  });

  it('falls back to the newest page when the API does not know `after` (400)', async () => {
    const { api, timeline } = open();
    api.listEventsCalls[0]!.resolve({ items: range(1, 4), nextCursor: null });
    await settle();
    timeline.addLive([liveEventView(7)]);
    api.eventsAfterCalls[0]!.reject(badRequest());
    await settle();
    expect(api.listEventsCalls[1]!.args).toEqual([ROBOT, undefined, 500]);
    api.listEventsCalls[1]!.resolve({ items: range(1, 7), nextCursor: null });
    await settle();
    expect(seqs(timeline)).toEqual([7, 6, 5, 4, 3, 2, 1]);
  });

  it('pages back with the cursor, one page at a time, until there are no older events', async () => {
    const { api, timeline } = open();
    api.listEventsCalls[0]!.resolve({ items: range(201, 300), nextCursor: 'c1' });
    await settle();
    expect(timeline.getSnapshot().hasOlder).toBe(true);
    const first = timeline.loadOlder();
    const again = timeline.loadOlder();
    expect(again).toBe(first);
    expect(timeline.getSnapshot().loadingOlder).toBe(true);
    expect(api.listEventsCalls.map((call) => call.args)).toEqual([
      [ROBOT, undefined, TIMELINE_PAGE_SIZE],
      [ROBOT, 'c1', TIMELINE_PAGE_SIZE],
    ]);
    api.listEventsCalls[1]!.resolve({ items: range(101, 200), nextCursor: null });
    await first;
    expect(timeline.getSnapshot()).toMatchObject({ hasOlder: false, loadingOlder: false, error: null });
    expect(seqs(timeline)).toEqual(range(101, 300).map((event) => event.seq));
    await timeline.loadOlder();
    expect(api.listEventsCalls).toHaveLength(2);
  });

  it('shows a failed first page and tries again', async () => {
    const { api, env, timeline } = open();
    api.listEventsCalls[0]!.reject(new Error('503 SERVER_ERROR'));
    await settle();
    expect(timeline.getSnapshot().error).toMatch(/503/);
    env.advance(3_000);
    api.listEventsCalls[1]!.resolve({ items: range(1, 2), nextCursor: null });
    await settle();
    expect(timeline.getSnapshot()).toMatchObject({ error: null });
    expect(seqs(timeline)).toEqual([2, 1]);
  });

  it('changes nothing and asks nothing once closed', async () => {
    const { api, env, timeline } = open();
    let notified = 0;
    timeline.subscribe(() => (notified += 1));
    timeline.close();
    api.listEventsCalls[0]!.resolve({ items: range(1, 2), nextCursor: null });
    await settle();
    timeline.addLive([liveEventView(5)]);
    timeline.reconnected();
    env.advance(60_000);
    expect(notified).toBe(0);
    expect(seqs(timeline)).toEqual([]);
    expect(api.listEventsCalls).toHaveLength(1);
    expect(api.eventsAfterCalls).toHaveLength(0);
  });
});
