import { EventsAck, type AgentEvent, type AgentEventBatch } from '../schemas/device.js';
import type { EventQueue } from './adapters/event-queue.js';
import type { Logger } from './adapters/json-log.js';
import type { Link } from './adapters/mqtt-link.js';
import type { AgentClock } from './agent.js';
import { firstProblem } from './command-payload.js';
import {
  ackReceived,
  batchSent,
  firstUnsettled,
  initialDelivery,
  linkDown,
  linkUp,
  nextAction,
  timeElapsed,
  type DeliverySettings,
  type DeliveryState,
  type Moment,
} from './core/outbox-delivery.js';

/**
 * The outbox: events from the on-disk queue to the cloud. It owns the queue from open to close, the drain (the
 * delivery core, agent/core/outbox-delivery.ts, decides what goes out when; this does what it says, with a timer for
 * the core's ack deadline), the cloud's acknowledgements (`ack` commands: applied to the core at once, to the queue,
 * which forgets the events on disk, in arrival order) and the report of events the full queue had to drop.
 *
 * INVARIANTS
 * - One drain at a time: `pumping` is the only "drain running" guard; a wake-up during a drain (`pumpAgain`) runs
 *   one more drain after it, never a second one beside it. Batches therefore go out one publish at a time, in
 *   position order.
 * - An event leaves the disk only on the cloud's EventsAck for its outbox, never on the broker's PUBACK.
 * - Dropped events are reported once the link is up, as an `EventsDropped { count }` put into the queue itself (so
 *   it is acknowledged end to end like any event), and before the next drain: making room for it may drop the
 *   oldest, and those need not go out. At most one report is being queued at a time (`reportingDropped`).
 * - A failed publish never loses or strands events: on a link that dropped, the drain stops until the next
 *   connection (which sends everything unacknowledged again); on a link still up (the PUBACK timed out: a broker or
 *   cloud slow under load), the batch counts as sent and unanswered, so the core's ack deadline sends it again, with
 *   its growing backoff — never a stop that only a reconnection would end, and no hammering either.
 * - Nothing runs after `stop()`: no drain, no timer, no report; `idle()` covers what was under way.
 */
export class OutboxSender {
  private state: DeliveryState | undefined;
  private running = false;
  private opened = false;
  private linkIsUp = false;
  private pumping: Promise<void> | undefined;
  private pumpAgain = false;
  private timer: NodeJS.Timeout | undefined;
  private reportingDropped: Promise<void> | undefined;
  /** Acknowledgements being written to the queue. */
  private readonly acknowledging = new Set<Promise<void>>();

  constructor(
    private readonly deps: {
      readonly queue: EventQueue;
      readonly link: Link;
      readonly topic: string;
      readonly clock: AgentClock;
      readonly random: () => number;
      readonly settings: DeliverySettings;
      readonly log: Logger;
    },
  ) {}

  /** Opens the queue (an unsent EventsDropped count or events from the last run are picked up) and starts. */
  async start(): Promise<void> {
    await this.deps.queue.open();
    this.opened = true;
    this.running = true;
    this.state = initialDelivery(this.deps.queue.snapshot());
  }

  /** Resolves once the event is on disk (an invalid one is refused, field named); it goes out when the link is up. */
  async report(event: AgentEvent): Promise<void> {
    await this.deps.queue.enqueue(event);
    this.queued();
  }

  /** For the start log. */
  status(): { readonly outboxId: string; readonly pendingEvents: number } {
    return { outboxId: this.deps.queue.outboxId, pendingEvents: this.deps.queue.stats().pending };
  }

  linkUp(): void {
    if (!this.running || this.state === undefined) return;
    this.linkIsUp = true;
    this.state = linkUp(this.state, this.deps.queue.snapshot());
    // The report first: it may drop the oldest to make room, and those need not go out.
    if (!this.reportDropped()) this.pump();
  }

  linkDown(): void {
    this.linkIsUp = false;
    if (this.state !== undefined) this.state = linkDown(this.state);
    this.disarm();
  }

  /** An event was queued. */
  private queued(): void {
    if (!this.reportDropped()) this.pump();
  }

  /** An `ack` command's JSON body. */
  onAck(topic: string, body: unknown): void {
    if (!this.running || this.state === undefined) return;
    const parsed = EventsAck.safeParse(body);
    if (!parsed.success) {
      this.deps.log.warn('malformed events ack ignored', { topic, ...firstProblem(parsed.error) });
      return;
    }
    const ack = parsed.data;
    for (const rejected of ack.rejected ?? []) {
      this.deps.log.warn('the cloud refused an event for good; it leaves the queue', {
        eventId: rejected.eventId,
        position: rejected.position,
        problems: rejected.problems,
      });
    }
    const view = this.deps.queue.snapshot();
    const outcome = ackReceived(this.state, ack, view, this.moment(), this.deps.settings);
    this.state = outcome.state;
    if (outcome.ignored === 'other-outbox') {
      this.deps.log.info('events ack for another outbox ignored', { outboxId: ack.outbox?.id, ours: view.outboxId });
      return;
    }
    if (outcome.wentBack) {
      this.deps.log.info('the cloud asked for a resend: sending again in order', {
        from: firstUnsettled(this.state, view),
      });
    }
    if (ack.outbox !== undefined) this.forgetThrough(ack.outbox.id, ack.outbox.through);
    this.pump();
  }

  stop(): void {
    this.running = false;
    this.linkIsUp = false;
    this.disarm();
  }

  /** Work under way: a publish, an EventsDropped being queued, acknowledgements being written. */
  idle(): Promise<unknown> {
    return Promise.all([this.pumping, this.reportingDropped, ...this.acknowledging]);
  }

  /** After `stop()` and `idle()` (or giving up on it): closes the queue if it was opened. Never rejects. */
  async close(): Promise<void> {
    if (!this.opened) return;
    this.opened = false;
    try {
      await this.deps.queue.close();
    } catch (error) {
      this.deps.log.warn('closing the event queue failed', { error });
    }
  }

  private forgetThrough(outboxId: string, through: number): void {
    const work = this.deps.queue.acknowledge(outboxId, through).then(
      (removed) => {
        if (removed > 0) this.deps.log.info('events acknowledged by the cloud', { removed, through, pending: this.deps.queue.stats().pending });
      },
      (error: unknown) => {
        // They stay queued: a later acknowledgement (or a resend acknowledged as settled) removes them.
        if (this.running) this.deps.log.warn('could not record an events ack; those events stay queued', { error, through });
      },
    );
    const tracked = work.finally(() => this.acknowledging.delete(tracked));
    this.acknowledging.add(tracked);
  }

  /**
   * Puts an EventsDropped into the queue when the link is up and the queue had to drop events, then sends. Returns
   * whether it is doing so (else the caller sends).
   */
  private reportDropped(): boolean {
    if (this.reportingDropped) return true;
    if (!this.running || !this.linkIsUp || this.deps.queue.stats().droppedCount === 0) return false;
    const { queue, clock, log } = this.deps;
    this.reportingDropped = queue.reportDropped(new Date(clock.now()).toISOString()).then(
      (event) => {
        this.reportingDropped = undefined;
        if (event?.type === 'EventsDropped') {
          log.warn('the event queue was full: an EventsDropped with the count is queued for the cloud', {
            droppedCount: event.data.count,
            eventId: event.eventId,
          });
        }
        // Events reported meanwhile may have made the queue drop more.
        if (!this.reportDropped()) this.pump();
      },
      (error: unknown) => {
        this.reportingDropped = undefined;
        // The count is kept; the next event or connection tries again.
        if (this.running) log.warn('could not queue the EventsDropped report; the count is kept', { error });
        this.pump();
      },
    );
    return true;
  }

  private pump(): void {
    if (!this.running) return;
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = this.send().finally(() => {
      this.pumping = undefined;
      if (this.pumpAgain) {
        this.pumpAgain = false;
        this.pump();
      }
    });
  }

  /** Sends what the core says, one batch at a time, until it says wait. */
  private async send(): Promise<void> {
    const { queue, link, topic, settings, log } = this.deps;
    while (this.running && this.state !== undefined) {
      const action = nextAction(this.state, queue.snapshot(), settings);
      if (action.kind === 'wait') {
        this.arm(action.until);
        return;
      }
      const batch = queue.batchFrom(action.from);
      if (batch === undefined) {
        // Cannot happen (the core only asks for what the snapshot says is sendable); the ack timer still recovers.
        log.error('event queue has no event at the position to send', { from: action.from });
        this.arm(this.state.deadline);
        return;
      }
      this.state = batchSent(this.state, { first: batch.outbox.first, last: batch.last }, this.moment(), settings);
      const message: AgentEventBatch = { outbox: batch.outbox, events: batch.events };
      try {
        await link.publish(topic, JSON.stringify(message), 1);
      } catch (error) {
        if (!this.running || this.state === undefined) return;
        if (link.isConnected) {
          log.warn('publishing events failed on a live connection; they go again at the ack deadline', {
            error,
            pending: queue.stats().pending,
          });
          this.arm(this.state.deadline);
          return;
        }
        this.state = linkDown(this.state);
        this.disarm();
        log.warn('event delivery stopped until the next connection; events stay queued', {
          error,
          pending: queue.stats().pending,
        });
        return;
      }
      log.debug('events sent', { first: batch.outbox.first, last: batch.last, after: batch.outbox.after });
    }
  }

  /** Wakes the core at its ack deadline. */
  private arm(until: number | undefined): void {
    this.disarm();
    if (until === undefined || !this.running) return;
    this.timer = setTimeout(() => this.onTimer(), Math.max(0, until - this.deps.clock.now()));
  }

  private disarm(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private onTimer(): void {
    this.timer = undefined;
    if (!this.running || this.state === undefined) return;
    const view = this.deps.queue.snapshot();
    const elapsed = timeElapsed(this.state, view, this.moment());
    this.state = elapsed.state;
    if (elapsed.timedOut) {
      this.deps.log.warn('no events ack from the cloud in time: sending again in order', {
        from: firstUnsettled(this.state, view),
        timeoutsInARow: this.state.timeouts,
      });
    }
    this.pump();
  }

  private moment(): Moment {
    return { now: this.deps.clock.now(), random: this.deps.random() };
  }
}
