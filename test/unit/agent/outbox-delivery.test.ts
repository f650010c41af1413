import { describe, expect, it } from 'vitest';
import {
  ackReceived,
  ackTimeout,
  batchSent,
  checkDeliverySettings,
  DEFAULT_DELIVERY_SETTINGS,
  firstUnsettled,
  initialDelivery,
  linkDown,
  linkUp,
  nextAction,
  timeElapsed,
  type DeliverySettings,
  type DeliveryState,
  type OutboxView,
} from '../../../agent/core/outbox-delivery.js';

const ID = 'f3a1c2d4-0000-4000-8000-000000000001';
const settings: DeliverySettings = { maxInFlightBatches: 2, ackTimeoutMs: 5_000, maxAckTimeoutMs: 60_000 };

function view(settledThrough: number, sendableThrough: number): OutboxView {
  return { outboxId: ID, settledThrough, sendableThrough };
}

const at = (now: number, random = 0.5) => ({ now, random });

/** Sends batches of `size` positions while the core says send; returns the batches sent. */
function sendAll(state: DeliveryState, queue: OutboxView, now: number, size = 10): { state: DeliveryState; sent: [number, number][] } {
  const sent: [number, number][] = [];
  for (;;) {
    const action = nextAction(state, queue, settings);
    if (action.kind === 'wait') return { state, sent };
    const last = Math.min(action.from + size - 1, queue.sendableThrough);
    state = batchSent(state, { first: action.from, last }, at(now), settings);
    sent.push([action.from, last]);
  }
}

function online(queue: OutboxView): DeliveryState {
  return linkUp(initialDelivery(queue), queue);
}

describe('outbox delivery core', () => {
  it('sends nothing while offline, and everything unsettled from the first position once the link is up', () => {
    const queue = view(3, 25);
    const offline = initialDelivery(queue);
    expect(nextAction(offline, queue, settings)).toEqual({ kind: 'wait', until: undefined });
    const { state, sent } = sendAll(online(queue), queue, 0);
    // A window of two batches, starting right after what is settled
    expect(sent).toEqual([
      [4, 13],
      [14, 23],
    ]);
    expect(nextAction(state, queue, settings)).toEqual({ kind: 'wait', until: 5_000 });
  });

  it('waits when everything queued is in flight, and sends what is queued later', () => {
    let queue = view(0, 2);
    let { state, sent } = sendAll(online(queue), queue, 0);
    expect(sent).toEqual([[1, 2]]);
    queue = view(0, 3);
    ({ state, sent } = sendAll(state, queue, 10));
    expect(sent).toEqual([[3, 3]]);
    // The timer runs from the oldest batch in flight
    expect(state.deadline).toBe(5_000);
  });

  it('slides the window on acknowledgement progress, also when an ack lands inside a batch', () => {
    const queue = view(0, 40);
    let { state } = sendAll(online(queue), queue, 0);
    const outcome = ackReceived(state, { outbox: { id: ID, through: 15 } }, queue, at(1_000), settings);
    expect(outcome).toMatchObject({ progressed: true, wentBack: false });
    state = outcome.state;
    expect(state.inFlight.map((batch) => [batch.first, batch.last])).toEqual([[16, 20]]);
    // Progress restarts the timer
    expect(state.deadline).toBe(6_000);
    const more = sendAll(state, queue, 1_000);
    expect(more.sent).toEqual([[21, 30]]);
  });

  it('stops the timer when everything sent is acknowledged', () => {
    const queue = view(0, 5);
    const { state } = sendAll(online(queue), queue, 0);
    const { state: after } = ackReceived(state, { outbox: { id: ID, through: 5 } }, queue, at(100), settings);
    expect(after.deadline).toBeUndefined();
    expect(nextAction(after, view(5, 5), settings)).toEqual({ kind: 'wait', until: undefined });
  });

  it('ignores an ack for another outbox, and late or duplicated acks', () => {
    const queue = view(0, 40);
    const { state } = sendAll(online(queue), queue, 0);
    const other = ackReceived(state, { outbox: { id: 'another-outbox-id', through: 30 }, resend: true }, queue, at(1), settings);
    expect(other).toMatchObject({ progressed: false, wentBack: false, ignored: 'other-outbox' });
    expect(other.state).toBe(state);

    const first = ackReceived(state, { outbox: { id: ID, through: 12 } }, queue, at(2), settings).state;
    for (const through of [12, 5, 0]) {
      const late = ackReceived(first, { outbox: { id: ID, through } }, queue, at(3), settings);
      expect(late.progressed).toBe(false);
      expect(late.state).toEqual(first);
    }
    // Without an outbox, there is nothing for this sender
    expect(ackReceived(first, { resend: true }, queue, at(4), settings).state).toBe(first);
  });

  it('goes back to the first unsettled position when the cloud asks for a resend', () => {
    const queue = view(0, 40);
    let { state } = sendAll(online(queue), queue, 0);
    const outcome = ackReceived(state, { outbox: { id: ID, through: 0 }, resend: true }, queue, at(100), settings);
    expect(outcome).toMatchObject({ progressed: false, wentBack: true });
    state = outcome.state;
    expect(state.inFlight).toEqual([]);
    expect(sendAll(state, queue, 100).sent).toEqual([
      [1, 10],
      [11, 20],
    ]);
  });

  it('applies the progress of a resend ack before going back', () => {
    const queue = view(0, 40);
    const { state } = sendAll(online(queue), queue, 0);
    const outcome = ackReceived(state, { outbox: { id: ID, through: 10 }, resend: true }, queue, at(100), settings);
    expect(outcome).toMatchObject({ progressed: true, wentBack: true });
    expect(sendAll(outcome.state, queue, 100).sent[0]).toEqual([11, 20]);
  });

  it('ignores the echoes of a resend request from messages sent before it went back, and honours a later one', () => {
    // Given a window of two where the first batch was lost: the cloud answers the second with resend
    const queue = view(0, 40);
    let { state } = sendAll(online(queue), queue, 0);
    state = ackReceived(state, { outbox: { id: ID, through: 0 }, resend: true }, queue, at(10), settings).state;
    ({ state } = sendAll(state, queue, 10));
    // When the same resend arrives again (an answer to a message sent before the go-back)
    const echo = ackReceived(state, { outbox: { id: ID, through: 0 }, resend: true }, queue, at(20), settings);
    // Then it does not go back a second time
    expect(echo).toMatchObject({ wentBack: false, ignored: 'stale-resend' });
    expect(echo.state.inFlight).toEqual(state.inFlight);
    // But once the cloud made progress, a new resend request is news
    const progress = ackReceived(echo.state, { outbox: { id: ID, through: 10 } }, queue, at(30), settings).state;
    const fresh = ackReceived(progress, { outbox: { id: ID, through: 10 }, resend: true }, queue, at(40), settings);
    expect(fresh.wentBack).toBe(true);
  });

  it('honours the first resend request after a connection (nothing could echo)', () => {
    const queue = view(0, 40);
    const { state } = sendAll(online(queue), queue, 0);
    expect(ackReceived(state, { outbox: { id: ID, through: 0 }, resend: true }, queue, at(10), settings).wentBack).toBe(true);
  });

  it('ignores a resend request older than what was acknowledged', () => {
    const queue = view(0, 40);
    let { state } = sendAll(online(queue), queue, 0);
    state = ackReceived(state, { outbox: { id: ID, through: 10 } }, queue, at(10), settings).state;
    expect(ackReceived(state, { outbox: { id: ID, through: 5 }, resend: true }, queue, at(20), settings)).toMatchObject({
      wentBack: false,
      ignored: 'stale',
    });
  });

  it('goes back on an ack timeout, with a timeout that doubles (jittered) up to the cap, reset by progress', () => {
    const queue = view(0, 40);
    let { state } = sendAll(online(queue), queue, 0);
    expect(timeElapsed(state, queue, at(4_999)).timedOut).toBe(false);
    let elapsed = timeElapsed(state, queue, at(5_000));
    expect(elapsed.timedOut).toBe(true);
    state = elapsed.state;
    expect(state.timeouts).toBe(1);
    // Sent again from the start, with a longer wait: 10 s ceiling, jitter in its upper half
    let resent = sendAll(state, queue, 5_000, 10);
    expect(resent.sent[0]).toEqual([1, 10]);
    expect(resent.state.deadline).toBe(5_000 + ackTimeout(1, 0.5, settings));
    expect(ackTimeout(1, 0.5, settings)).toBe(7_500);
    state = resent.state;
    for (let k = 0; k < 10; k += 1) {
      elapsed = timeElapsed(state, queue, at(state.deadline ?? 0));
      state = sendAll(elapsed.state, queue, elapsed.state.deadline ?? 0).state;
    }
    expect(state.timeouts).toBe(11);
    // Capped at 60 s
    expect(ackTimeout(state.timeouts, 0.999, settings)).toBeLessThanOrEqual(60_000);
    expect(ackTimeout(state.timeouts, 0, settings)).toBe(30_000);
    // Progress resets it
    state = ackReceived(state, { outbox: { id: ID, through: 3 } }, queue, at(1_000_000), settings).state;
    expect(state.timeouts).toBe(0);
    expect(state.deadline).toBe(1_005_000);
  });

  it('has no timer running while nothing is in flight or the link is down', () => {
    const queue = view(0, 40);
    const { state } = sendAll(online(queue), queue, 0);
    const down = linkDown(state);
    expect(nextAction(down, queue, settings)).toEqual({ kind: 'wait', until: undefined });
    expect(timeElapsed(down, queue, at(1_000_000)).timedOut).toBe(false);
    const idle = online(view(0, 0));
    expect(timeElapsed(idle, view(0, 0), at(1_000_000)).timedOut).toBe(false);
  });

  it('sends everything unsettled again after a reconnection, from the first unacknowledged position', () => {
    const queue = view(0, 40);
    let { state } = sendAll(online(queue), queue, 0);
    state = ackReceived(state, { outbox: { id: ID, through: 7 } }, queue, at(10), settings).state;
    state = linkUp(linkDown(state), queue);
    expect(sendAll(state, queue, 20).sent).toEqual([
      [8, 17],
      [18, 27],
    ]);
  });

  it('never sends a position the queue settled (dropped) meanwhile', () => {
    let queue = view(0, 40);
    let { state } = sendAll(online(queue), queue, 0);
    // The queue was full and dropped 1..25; it says so in every message from now on (`after`)
    queue = view(25, 40);
    expect(firstUnsettled(state, queue)).toBe(26);
    state = ackReceived(state, { outbox: { id: ID, through: 0 }, resend: true }, queue, at(10), settings).state;
    expect(sendAll(state, queue, 10).sent[0]).toEqual([26, 35]);
  });

  it('does not send beyond what is sendable (a hole left by a corrupt record)', () => {
    const queue = view(0, 3);
    const { sent } = sendAll(online(queue), queue, 0);
    expect(sent).toEqual([[1, 3]]);
  });

  it('checks its settings', () => {
    expect(checkDeliverySettings(DEFAULT_DELIVERY_SETTINGS)).toEqual({ maxInFlightBatches: 4, ackTimeoutMs: 5_000, maxAckTimeoutMs: 60_000 });
    expect(() => checkDeliverySettings({ ...settings, maxInFlightBatches: 0 })).toThrow(/maxInFlightBatches/);
    expect(() => checkDeliverySettings({ ...settings, ackTimeoutMs: 0 })).toThrow(/ackTimeoutMs/);
    expect(() => checkDeliverySettings({ ...settings, maxAckTimeoutMs: 10 })).toThrow(/maxAckTimeoutMs/);
  });
});
