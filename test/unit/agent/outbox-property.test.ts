import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventQueue, type EventQueueLimits } from '../../../agent/adapters/event-queue.js';
import {
  ackReceived,
  batchSent,
  DEFAULT_DELIVERY_SETTINGS,
  initialDelivery,
  linkDown,
  linkUp,
  nextAction,
  timeElapsed,
  type DeliverySettings,
  type DeliveryState,
} from '../../../agent/core/outbox-delivery.js';
import { markBefore, verdictFor, type OutboxMark } from '../../../functions/domain/outbox-order.js';
import { AgentEventBatch, EventsAck, type AgentEvent } from '../../../schemas/device.js';

/**
 * The agent's outbox against a channel that loses and duplicates messages both ways, and agent restarts: the real
 * EventQueue (on a temporary directory, tmpfs when there is one), the real delivery core, and a cloud that decides
 * with the real markBefore/verdictFor and dedupes on eventId. Whatever happened, once the channel stops losing
 * things, the cloud's log holds the agent's events in the queue's order, none missing, none twice.
 */

const settings: DeliverySettings = { ...DEFAULT_DELIVERY_SETTINGS, maxInFlightBatches: 2, ackTimeoutMs: 1_000, maxAckTimeoutMs: 8_000 };
/** Small batches, so that a few events make several messages and the window matters. */
const batchLimits = { maxEvents: 3, maxBytes: 96 * 1024 };

/** The cloud: one mark per robot, the event log, and the eventIds it has. */
class Cloud {
  mark: OutboxMark | null = null;
  readonly log: AgentEvent[] = [];
  private readonly seen = new Set<string>();

  receive(message: AgentEventBatch): EventsAck {
    const outbox = message.outbox;
    if (outbox === undefined) throw new Error('the agent sent events without their outbox position');
    let mark = markBefore(this.mark, outbox);
    let resend = false;
    for (const [index, event] of message.events.entries()) {
      const position = outbox.first + index;
      const verdict = verdictFor(mark, position);
      if (verdict === 'settled') continue;
      if (verdict === 'gap') {
        resend = true;
        break;
      }
      if (!this.seen.has(event.eventId)) {
        this.seen.add(event.eventId);
        this.log.push(event);
      }
      mark = { id: mark.id, through: position };
    }
    this.mark = mark;
    return EventsAck.parse({ outbox: { id: mark.id, through: mark.through }, ...(resend ? { resend: true } : {}) });
  }
}

/** The agent's side as agent/agent.ts wires it: the queue, the delivery core, and the link's ups and downs. */
class Agent {
  queue!: EventQueue;
  state!: DeliveryState;
  linkIsUp = false;
  /** Every event the queue took, in the order it took them (reports of dropped events included). */
  readonly queued: AgentEvent[] = [];
  /** The eventIds the queue dropped because it was full (each may have been sent before, and arrived anyway). */
  readonly dropped = new Set<string>();
  private readonly byPosition = new Map<number, string>();

  constructor(
    private readonly directory: string,
    private readonly limits: EventQueueLimits,
    private readonly world: { now: number },
  ) {}

  async open(): Promise<void> {
    this.queue = new EventQueue({ directory: this.directory, ...this.limits, log: () => undefined });
    await this.queue.open();
    this.state = initialDelivery(this.queue.snapshot());
    this.linkIsUp = false;
  }

  async restart(loseState: boolean): Promise<void> {
    await this.queue.close();
    if (loseState) await rm(join(this.directory, 'state.json'), { force: true });
    await this.open();
  }

  async report(n: number): Promise<void> {
    const event: AgentEvent = {
      eventId: `event-${String(n).padStart(6, '0')}`,
      occurredAt: '2026-11-22T08:00:00.000Z',
      type: 'TeleoperationStopped',
      data: { reason: `session ${n}` },
    };
    await this.tracingDrops(async () => {
      this.byPosition.set(await this.queue.enqueue(event), event.eventId);
      this.queued.push(event);
    });
    await this.reportDropped();
  }

  async up(): Promise<void> {
    this.linkIsUp = true;
    this.state = linkUp(this.state, this.queue.snapshot());
    await this.reportDropped();
  }

  down(): void {
    this.linkIsUp = false;
    this.state = linkDown(this.state);
  }

  /** Publishes what the core lets it, into the channel. */
  send(channel: AgentEventBatch[]): void {
    for (;;) {
      const action = nextAction(this.state, this.queue.snapshot(), settings);
      if (action.kind === 'wait') return;
      const batch = this.queue.batchFrom(action.from, batchLimits);
      if (batch === undefined) throw new Error(`the core asked for position ${action.from}, which the queue does not have`);
      this.state = batchSent(this.state, { first: batch.outbox.first, last: batch.last }, this.moment(), settings);
      // What goes on the wire must be a valid message (first > after, 1..100 events).
      channel.push(AgentEventBatch.parse({ outbox: batch.outbox, events: batch.events }));
    }
  }

  async onAck(ack: EventsAck): Promise<void> {
    this.state = ackReceived(this.state, ack, this.queue.snapshot(), this.moment(), settings).state;
    if (ack.outbox !== undefined) await this.queue.acknowledge(ack.outbox.id, ack.outbox.through);
  }

  tick(): void {
    this.state = timeElapsed(this.state, this.queue.snapshot(), this.moment()).state;
  }

  private async reportDropped(): Promise<void> {
    if (!this.linkIsUp) return;
    await this.tracingDrops(async () => {
      const report = await this.queue.reportDropped(new Date(this.world.now).toISOString());
      if (report === undefined) return;
      this.byPosition.set(this.queue.stats().lastSeq, report.eventId);
      this.queued.push(report);
    });
  }

  /** Enqueueing only settles positions by dropping them. */
  private async tracingDrops(operation: () => Promise<void>): Promise<void> {
    const before = this.queue.stats().acknowledgedSeq;
    await operation();
    for (let position = before + 1; position <= this.queue.stats().acknowledgedSeq; position += 1) {
      const eventId = this.byPosition.get(position);
      if (eventId !== undefined) this.dropped.add(eventId);
    }
  }

  private moment() {
    return { now: this.world.now, random: 0.5 };
  }
}

type Step =
  | { kind: 'report' }
  | { kind: 'send' }
  | { kind: 'deliver' | 'lose' | 'duplicate' }
  | { kind: 'deliverAck' | 'loseAck' | 'duplicateAck' }
  | { kind: 'tick'; ms: number }
  | { kind: 'down' | 'up' }
  | { kind: 'restart'; loseState: boolean };

function steps(allowStateLoss: boolean): fc.Arbitrary<Step[]> {
  const step: fc.Arbitrary<Step> = fc.oneof(
    { weight: 4, arbitrary: fc.constant({ kind: 'report' } as const) },
    { weight: 4, arbitrary: fc.constant({ kind: 'send' } as const) },
    { weight: 4, arbitrary: fc.constantFrom(...(['deliver', 'lose', 'duplicate'] as const)).map((kind) => ({ kind })) },
    { weight: 4, arbitrary: fc.constantFrom(...(['deliverAck', 'loseAck', 'duplicateAck'] as const)).map((kind) => ({ kind })) },
    { weight: 2, arbitrary: fc.integer({ min: 1, max: 3_000 }).map((ms) => ({ kind: 'tick', ms }) as const) },
    { weight: 1, arbitrary: fc.constantFrom(...(['down', 'up'] as const)).map((kind) => ({ kind })) },
    {
      weight: 1,
      arbitrary: (allowStateLoss ? fc.boolean() : fc.constant(false)).map((loseState) => ({ kind: 'restart', loseState }) as const),
    },
  );
  return fc.array(step, { minLength: 1, maxLength: 80, size: 'max' });
}

let root: string;
let runNumber = 0;

beforeAll(async () => {
  // The queue fsyncs every write: on tmpfs that costs nothing, so a hundred worlds run in a few seconds.
  root = await mkdtemp(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'outbox-property-'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

/** Plays `plan`, then lets the channel work without losses until the queue is empty. */
async function play(plan: Step[], limits: EventQueueLimits): Promise<{ agent: Agent; cloud: Cloud }> {
  runNumber += 1;
  const world = { now: 0 };
  const agent = new Agent(join(root, `run-${runNumber}`), limits, world);
  const cloud = new Cloud();
  const toCloud: AgentEventBatch[] = [];
  const toAgent: EventsAck[] = [];
  let reported = 0;
  await agent.open();
  await agent.up();
  try {
    for (const step of plan) {
      switch (step.kind) {
        case 'report':
          reported += 1;
          await agent.report(reported);
          agent.send(toCloud);
          break;
        case 'send':
          agent.send(toCloud);
          break;
        case 'deliver': {
          const message = toCloud.shift();
          if (message) toAgent.push(cloud.receive(message));
          break;
        }
        case 'lose':
          toCloud.shift();
          break;
        case 'duplicate':
          if (toCloud[0]) toCloud.unshift(toCloud[0]);
          break;
        case 'deliverAck': {
          const ack = toAgent.shift();
          if (ack) await agent.onAck(ack);
          agent.send(toCloud);
          break;
        }
        case 'loseAck':
          toAgent.shift();
          break;
        case 'duplicateAck':
          if (toAgent[0]) toAgent.unshift(toAgent[0]);
          break;
        case 'tick':
          world.now += step.ms;
          agent.tick();
          agent.send(toCloud);
          break;
        case 'down':
          agent.down();
          break;
        case 'up':
          if (!agent.linkIsUp) await agent.up();
          agent.send(toCloud);
          break;
        case 'restart':
          // Messages and acks already on their way still arrive: the network does not know the agent restarted.
          await agent.restart(step.loseState);
          await agent.up();
          agent.send(toCloud);
          break;
      }
    }

    // From here on the channel delivers everything, in order, once; the agent keeps its link.
    if (!agent.linkIsUp) await agent.up();
    for (let round = 0; ; round += 1) {
      if (round > 200) throw new Error('the outbox did not drain');
      agent.send(toCloud);
      while (toCloud.length > 0 || toAgent.length > 0) {
        const message = toCloud.shift();
        if (message) toAgent.push(cloud.receive(message));
        const ack = toAgent.shift();
        if (ack) await agent.onAck(ack);
        agent.send(toCloud);
      }
      if (agent.queue.stats().pending === 0) break;
      // Nothing more in flight that answers: the ack timeout is what moves things now.
      world.now = Math.max(world.now + 1, agent.state.deadline ?? world.now + settings.maxAckTimeoutMs);
      agent.tick();
    }
    return { agent, cloud };
  } finally {
    await agent.queue.close();
  }
}

const ids = (events: AgentEvent[]) => events.map((event) => event.eventId);

describe('outbox delivery over a lossy, duplicating channel with agent restarts (property)', () => {
  it('ends with the log equal to the queue order: nothing missing, nothing twice', async () => {
    await fc.assert(
      fc.asyncProperty(steps(true), async (plan) => {
        const { agent, cloud } = await play(plan, { maxEvents: 1_000 });
        expect(agent.queue.stats()).toMatchObject({ pending: 0, droppedCount: 0 });
        expect(ids(cloud.log)).toEqual(ids(agent.queued));
      }),
      { numRuns: 100 },
    );
  }, 30_000);

  it('with a queue so small that it drops: the log keeps the queue order, and every drop is counted once', async () => {
    await fc.assert(
      fc.asyncProperty(steps(false), async (plan) => {
        const { agent, cloud } = await play(plan, { maxEvents: 3 });
        expect(agent.queue.stats()).toMatchObject({ pending: 0, droppedCount: 0 });
        const logged = ids(cloud.log);
        // Nothing twice, and in the order the queue took them
        expect(new Set(logged).size).toBe(logged.length);
        const order = new Map(ids(agent.queued).map((eventId, index) => [eventId, index]));
        const positions = logged.map((eventId) => order.get(eventId) ?? -1);
        expect(positions.every((position) => position >= 0)).toBe(true);
        expect([...positions].sort((a, b) => a - b)).toEqual(positions);
        // Whatever is missing was dropped by the queue
        const missing = ids(agent.queued).filter((eventId) => !logged.includes(eventId));
        expect(missing.filter((eventId) => !agent.dropped.has(eventId))).toEqual([]);
        // and the EventsDropped in the log count each event the queue gave up once (a dropped report passes its
        // count on to the next one). An event or report that was already on its way when it was dropped may arrive
        // anyway and is counted all the same, since the queue cannot know: a report that did so is counted twice.
        const count = (event: AgentEvent) => (event.type === 'EventsDropped' ? event.data.count : 0);
        const droppedFacts = agent.queued.filter((event) => event.type !== 'EventsDropped' && agent.dropped.has(event.eventId));
        const reportsCountedTwice = cloud.log
          .filter((event) => agent.dropped.has(event.eventId))
          .reduce((sum, event) => sum + count(event), 0);
        const counted = cloud.log.reduce((sum, event) => sum + count(event), 0);
        expect(counted).toBe(droppedFacts.length + reportsCountedTwice);
      }),
      { numRuns: 100 },
    );
  }, 30_000);
});
