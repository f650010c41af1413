/**
 * When the agent sends which of its queued events: go-back-N over MQTT, with the cloud's EventsAck as the only proof
 * of delivery (the broker's PUBACK only says IoT Core took a message). Pure: no I/O and no timers; the runtime hands
 * in what the queue holds, what the link and the cloud said, the time (`now`, ms) and a random draw, and gets back a
 * new state and what to do next. The cloud's side of the same protocol is functions/domain/outbox-order.ts.
 *
 * INVARIANTS
 * - Positions: every queued event has a position in its outbox (the queue's journal seq). The queue never forgets an
 *   event the cloud has not acknowledged, except the oldest ones it drops when full; `settledThrough` (the queue's
 *   acknowledgedSeq, each message's `after`) is the highest position the agent will never send again.
 * - Order: every batch is a run of consecutive positions and is sent at `next`, the position after the last one sent;
 *   so on the wire the positions only ever go up, except where the sender deliberately goes back. Going back always
 *   restarts at the first position nobody has settled (`firstUnsettled`), so the cloud, which handles a position only
 *   right after its mark, is never asked to skip one.
 * - Go back (send again from `firstUnsettled`, in order) when: the cloud asks (`resend: true`), the oldest batch in
 *   flight has had no acknowledgement progress for the current ack timeout, or the link came up (again). Anything in
 *   flight before is forgotten: it may have been lost, and resending it is harmless (the cloud acknowledges a settled
 *   position again and appends nothing).
 * - Window: at most `maxInFlightBatches` batches sent and not yet covered by an acknowledgement.
 * - Timeouts: the ack timer runs only while something is in flight. It starts at `ackTimeoutMs`; each timeout in a row
 *   doubles its ceiling (capped at `maxAckTimeoutMs`) with jitter in the upper half, so a fleet that lost the cloud
 *   together does not resend in lockstep. Any acknowledgement that moves `ackedThrough` forward resets it.
 * - Acknowledgements are monotonic and idempotent: one for another outbox, a late one, or a duplicate changes nothing
 *   (`ackedThrough` only grows). An acknowledgement never makes the sender skip a position it was not told about.
 * - Stale resend requests: after going back with batches in flight, the cloud still answers those older messages,
 *   each with `resend` and the same mark. A resend whose `through` is not beyond the mark the sender last went back
 *   from is such an echo and is ignored (if it was not one, the ack timeout still recovers), so one lost message costs
 *   one window of resends, not one per message that followed it.
 * - Nothing is sent while the link is down; a failed publish counts as the link being down until it comes back.
 */

export interface DeliverySettings {
  /** Batches sent and not yet acknowledged by the cloud, at most. */
  readonly maxInFlightBatches: number;
  /** How long the oldest batch in flight may go without acknowledgement progress before everything is sent again. */
  readonly ackTimeoutMs: number;
  /** The ack timeout's ceiling after repeated timeouts. */
  readonly maxAckTimeoutMs: number;
}

export const DEFAULT_DELIVERY_SETTINGS: DeliverySettings = Object.freeze({
  maxInFlightBatches: 4,
  ackTimeoutMs: 5_000,
  maxAckTimeoutMs: 60_000,
});

/** What the queue holds, as the sender needs to know it. */
export interface OutboxView {
  readonly outboxId: string;
  /** Every position up to here is acknowledged or dropped: never sent again (the `after` of every message). */
  readonly settledThrough: number;
  /** The last position that can be sent now (the newest queued event, or the last one before a hole in the journal). */
  readonly sendableThrough: number;
}

/** The time, and a random draw in [0, 1) for the jitter. */
export interface Moment {
  readonly now: number;
  readonly random: number;
}

export interface InFlightBatch {
  readonly first: number;
  readonly last: number;
  readonly sentAt: number;
}

export interface DeliveryState {
  readonly outboxId: string;
  readonly online: boolean;
  /** The highest position the cloud acknowledged for this outbox (or the queue had settled when the sender began). */
  readonly ackedThrough: number;
  /** The position the next batch starts at, unless that is already settled. */
  readonly next: number;
  /** Oldest first; consecutive, non-overlapping. */
  readonly inFlight: readonly InFlightBatch[];
  /** When the oldest batch in flight times out; undefined when nothing is in flight. */
  readonly deadline: number | undefined;
  /** Ack timeouts in a row, without progress in between. */
  readonly timeouts: number;
  /** Resend requests whose `through` is at most this are echoes of messages sent before the last go-back. */
  readonly staleResendThrough: number | undefined;
}

/** What the runtime should do now. */
export type DeliveryAction =
  /** Take a batch from the queue starting at `from` (≤ 100 events, consecutive positions), publish it, report `sent`. */
  | { readonly kind: 'send'; readonly from: number }
  /** Nothing to send now; call `timeElapsed` at `until` if it is set. */
  | { readonly kind: 'wait'; readonly until: number | undefined };

/** The acknowledgement fields the sender uses (schemas/device.ts EventsAck). */
export interface DeliveryAck {
  readonly outbox?: { readonly id: string; readonly through: number } | undefined;
  readonly resend?: boolean | undefined;
}

export interface AckOutcome {
  readonly state: DeliveryState;
  /** `ackedThrough` moved forward: the queue may forget every event up to it. */
  readonly progressed: boolean;
  /** The sender went back to resend from the first unsettled position. */
  readonly wentBack: boolean;
  /** Why an acknowledgement changed nothing, for the log. */
  readonly ignored?: 'other-outbox' | 'stale' | 'stale-resend' | undefined;
}

export function checkDeliverySettings(settings: DeliverySettings): DeliverySettings {
  const { maxInFlightBatches, ackTimeoutMs, maxAckTimeoutMs } = settings;
  if (!Number.isInteger(maxInFlightBatches) || maxInFlightBatches < 1) {
    throw new RangeError(`delivery: maxInFlightBatches must be a positive integer, got ${maxInFlightBatches}`);
  }
  if (!Number.isFinite(ackTimeoutMs) || ackTimeoutMs <= 0) {
    throw new RangeError(`delivery: ackTimeoutMs must be positive, got ${ackTimeoutMs}`);
  }
  if (!Number.isFinite(maxAckTimeoutMs) || maxAckTimeoutMs < ackTimeoutMs) {
    throw new RangeError(`delivery: maxAckTimeoutMs must be at least ackTimeoutMs (${ackTimeoutMs}), got ${maxAckTimeoutMs}`);
  }
  return settings;
}

/** A sender for the queue as it stands, offline until `linkUp`. */
export function initialDelivery(view: OutboxView): DeliveryState {
  return {
    outboxId: view.outboxId,
    online: false,
    ackedThrough: view.settledThrough,
    next: view.settledThrough + 1,
    inFlight: [],
    deadline: undefined,
    timeouts: 0,
    staleResendThrough: undefined,
  };
}

/** The first position neither the cloud nor the queue has settled: where every go-back starts. */
export function firstUnsettled(state: DeliveryState, view: OutboxView): number {
  return Math.max(state.ackedThrough, view.settledThrough) + 1;
}

/** The link is up (first connection or a reconnection): send everything unsettled again, in order. */
export function linkUp(state: DeliveryState, view: OutboxView): DeliveryState {
  return { ...goBack(state, view), online: true };
}

/**
 * The link dropped, or a publish failed: nothing more is sent until `linkUp`. What is in flight is kept only so that
 * the go-back at `linkUp` knows the cloud may still answer it.
 */
export function linkDown(state: DeliveryState): DeliveryState {
  return { ...state, online: false, deadline: undefined };
}

export function nextAction(state: DeliveryState, view: OutboxView, settings: DeliverySettings): DeliveryAction {
  if (!state.online) return { kind: 'wait', until: undefined };
  const settled = firstUnsettled(state, view) - 1;
  const inFlight = state.inFlight.filter((batch) => batch.last > settled);
  if (inFlight.length >= settings.maxInFlightBatches) return { kind: 'wait', until: state.deadline };
  const from = Math.max(state.next, settled + 1);
  if (from > view.sendableThrough) return { kind: 'wait', until: inFlight.length > 0 ? state.deadline : undefined };
  return { kind: 'send', from };
}

/** A batch of positions `first..last` went to the link (record it before awaiting the publish). */
export function batchSent(
  state: DeliveryState,
  batch: { readonly first: number; readonly last: number },
  moment: Moment,
  settings: DeliverySettings,
): DeliveryState {
  if (batch.last < batch.first) throw new RangeError(`delivery: empty batch ${batch.first}..${batch.last}`);
  const inFlight = [...state.inFlight.filter((sent) => sent.last < batch.first), { ...batch, sentAt: moment.now }];
  return {
    ...state,
    next: batch.last + 1,
    inFlight,
    deadline: state.deadline ?? moment.now + ackTimeout(state.timeouts, moment.random, settings),
  };
}

/** An EventsAck arrived (already validated). */
export function ackReceived(
  state: DeliveryState,
  ack: DeliveryAck,
  view: OutboxView,
  moment: Moment,
  settings: DeliverySettings,
): AckOutcome {
  if (ack.outbox === undefined || ack.outbox.id !== state.outboxId) {
    return { state, progressed: false, wentBack: false, ignored: ack.outbox === undefined ? undefined : 'other-outbox' };
  }
  const { through } = ack.outbox;
  let next = state;
  const progressed = through > state.ackedThrough;
  if (progressed) {
    const inFlight = state.inFlight
      .filter((batch) => batch.last > through)
      .map((batch) => (batch.first > through ? batch : { ...batch, first: through + 1 }));
    next = {
      ...state,
      ackedThrough: through,
      next: Math.max(state.next, through + 1),
      inFlight,
      timeouts: 0,
      deadline: inFlight.length > 0 ? moment.now + settings.ackTimeoutMs : undefined,
      staleResendThrough:
        state.staleResendThrough !== undefined && through > state.staleResendThrough ? undefined : state.staleResendThrough,
    };
  }
  if (ack.resend !== true) return { state: next, progressed, wentBack: false };
  if (through < state.ackedThrough) return { state: next, progressed, wentBack: false, ignored: 'stale' };
  if (next.staleResendThrough !== undefined && through <= next.staleResendThrough) {
    return { state: next, progressed, wentBack: false, ignored: 'stale-resend' };
  }
  return { state: goBack(next, view), progressed, wentBack: true };
}

/** The clock moved: past the deadline, the window is sent again from the first unsettled position. */
export function timeElapsed(state: DeliveryState, view: OutboxView, moment: Moment): { state: DeliveryState; timedOut: boolean } {
  if (!state.online || state.deadline === undefined || moment.now < state.deadline) return { state, timedOut: false };
  return { state: { ...goBack(state, view), timeouts: state.timeouts + 1 }, timedOut: true };
}

/**
 * How long to wait for acknowledgement progress after `timeouts` timeouts in a row: `ackTimeoutMs` at first, then
 * a doubling ceiling (capped at `maxAckTimeoutMs`) with jitter in its upper half.
 */
export function ackTimeout(timeouts: number, random: number, settings: DeliverySettings): number {
  if (timeouts <= 0) return settings.ackTimeoutMs;
  const ceiling = Math.min(settings.maxAckTimeoutMs, settings.ackTimeoutMs * 2 ** Math.min(timeouts, 30));
  const unit = Number.isFinite(random) ? Math.min(1, Math.max(0, random)) : 0;
  return Math.round(ceiling / 2 + (unit * ceiling) / 2);
}

function goBack(state: DeliveryState, view: OutboxView): DeliveryState {
  const settled = firstUnsettled(state, view) - 1;
  // Messages still on their way may each come back with `resend` and this very mark: those echoes are not news.
  const echoesPossible = state.inFlight.some((batch) => batch.first > settled + 1);
  return {
    ...state,
    next: settled + 1,
    inFlight: [],
    deadline: undefined,
    staleResendThrough: echoesPossible ? Math.max(settled, state.staleResendThrough ?? 0) : state.staleResendThrough,
  };
}
