import { describe, expect, it } from 'vitest';
import type { AgentEvent, EventsAck } from '../../schemas/index.js';
import { topics } from '../../schemas/index.js';
import { ingestChannelBatch, type ChannelRecord } from '../../functions/app/ingest/ingest-channel.js';
import type { AppendOutcome, AppendRequest, RobotCommandChannel } from '../../functions/app/ports.js';
import { InMemoryEventLog } from '../support/in-memory-event-log.js';
import { connectedEvent, disconnectedEvent } from '../support/lifecycle-events.js';

const ROBOT = 'lekiwi-LK0001';
const NOW = new Date('2026-12-01T12:00:00.000Z');

/** Alternating starts and stops: every one of them is a fact the decider appends. */
function agentEvents(count: number, from = 0): AgentEvent[] {
  return Array.from({ length: count }, (_, offset) => {
    const n = from + offset;
    const occurredAt = new Date(NOW.getTime() - 1_000_000 + n).toISOString();
    return n % 2 === 0
      ? { eventId: `event-${String(n).padStart(6, '0')}`, occurredAt, type: 'TeleoperationStarted', data: { signals: ['actions'] } }
      : { eventId: `event-${String(n).padStart(6, '0')}`, occurredAt, type: 'TeleoperationStopped', data: { reason: 'idle' } };
  });
}

class Channel {
  private next = 1;
  record(data: unknown, partitionKey = ROBOT): ChannelRecord {
    return { sequenceNumber: String(this.next++).padStart(21, '0'), partitionKey, data };
  }
  batch(events: AgentEvent[], outbox?: { id: string; after: number; first: number }, robot = ROBOT): ChannelRecord {
    return this.record({ ...(outbox ? { outbox } : {}), events, thingName: robot, topic: topics.events(robot) }, robot);
  }
}

class Robots implements RobotCommandChannel {
  readonly acks: EventsAck[] = [];
  async send(robotId: string, request: string, payload: unknown): Promise<void> {
    expect(robotId).toBe(ROBOT);
    expect(request).toBe('ack');
    this.acks.push(payload as EventsAck);
  }
}

async function logged(log: InMemoryEventLog, robotId = ROBOT): Promise<string[]> {
  const page = await log.readEvents(robotId, { limit: 1000 });
  const ids = page.events.map((entry) => entry.event.eventId);
  let after = page.nextAfterSeq;
  while (after !== null) {
    const next = await log.readEvents(robotId, { afterSeq: after, limit: 1000 });
    ids.push(...next.events.map((entry) => entry.event.eventId));
    after = next.nextAfterSeq;
  }
  return ids;
}

function setup() {
  const log = new InMemoryEventLog();
  const robots = new Robots();
  const deps = { log, robots, now: () => NOW, sleep: async () => {} };
  return { log, robots, deps, channel: new Channel() };
}

describe('ingest channel: a backlog', () => {
  it('appends 10,000 queued events once each, in queue order, in a few hundred transactions, and acknowledges through the last', async () => {
    const { log, robots, deps, channel } = setup();
    const events = agentEvents(10_000);
    const records = Array.from({ length: 100 }, (_, index) =>
      channel.batch(events.slice(index * 100, index * 100 + 100), { id: 'outbox-1', after: 0, first: index * 100 + 1 }),
    );
    const result = await ingestChannelBatch(deps, records);
    expect(result.failedSequenceNumbers).toEqual([]);
    expect(await logged(log)).toEqual(events.map((event) => event.eventId));
    const writes = result.robots[0]!.writes;
    expect(writes).toBeLessThanOrEqual(Math.ceil(10_000 / 45));
    expect(robots.acks.at(-1)?.outbox).toEqual({ id: 'outbox-1', through: 10_000 });
    expect((await log.readHead(ROBOT))?.outbox).toEqual({ id: 'outbox-1', through: 10_000 });
  });

  it('appends nothing twice when the whole backlog is delivered again, and acknowledges it again', async () => {
    const { log, robots, deps, channel } = setup();
    const events = agentEvents(300);
    const records = [0, 1, 2].map((index) => channel.batch(events.slice(index * 100, index * 100 + 100), { id: 'outbox-1', after: 0, first: index * 100 + 1 }));
    await ingestChannelBatch(deps, records);
    await ingestChannelBatch(deps, [...records, ...records]);
    expect(await logged(log)).toEqual(events.map((event) => event.eventId));
    expect(robots.acks.at(-1)?.outbox).toEqual({ id: 'outbox-1', through: 300 });
  });
});

describe('ingest channel: the outbox order', () => {
  it('refuses a message whose predecessor was lost, asks for a resend, and keeps the order when it comes', async () => {
    const { log, robots, deps, channel } = setup();
    const events = agentEvents(6);
    // The first message never arrived; the second did.
    await ingestChannelBatch(deps, [channel.batch(events.slice(3), { id: 'o-12345678', after: 0, first: 4 })]);
    expect(await logged(log)).toEqual([]);
    expect(robots.acks.at(-1)).toEqual({ outbox: { id: 'o-12345678', through: 0 }, resend: true });
    await ingestChannelBatch(deps, [channel.batch(events, { id: 'o-12345678', after: 0, first: 1 })]);
    expect(await logged(log)).toEqual(events.map((event) => event.eventId));
    expect(robots.acks.at(-1)?.outbox).toEqual({ id: 'o-12345678', through: 6 });
  });

  it("does not wait for events the agent dropped (`after`), and starts a new order for a new outbox id", async () => {
    const { log, deps, channel } = setup();
    const events = agentEvents(8);
    await ingestChannelBatch(deps, [channel.batch(events.slice(0, 2), { id: 'o-first-1', after: 0, first: 1 })]);
    // Positions 3 and 4 dropped by the agent's full queue: it says everything up to 4 is settled.
    await ingestChannelBatch(deps, [channel.batch(events.slice(4, 6), { id: 'o-first-1', after: 4, first: 5 })]);
    // The robot was re-imaged: a new outbox starts at position 1 again.
    await ingestChannelBatch(deps, [channel.batch(events.slice(6, 8), { id: 'o-second', after: 0, first: 1 })]);
    expect(await logged(log)).toEqual([events[0], events[1], events[4], events[5], events[6], events[7]].map((event) => event!.eventId));
  });

  it('refuses one invalid event of a batch with its reason, and still appends and acknowledges the others', async () => {
    const { log, robots, deps, channel } = setup();
    const [first, second] = agentEvents(2);
    const broken = { ...second, data: { reason: 42 } } as unknown as AgentEvent;
    const record = channel.batch([first!, broken], { id: 'o-12345678', after: 0, first: 1 });
    await ingestChannelBatch(deps, [record]);
    // The refused one is counted in the robot's record (DeviceMessagesRejected), never appended itself.
    expect(await logged(log)).toEqual([first!.eventId, `rejected:${record.sequenceNumber}`]);
    const ack = robots.acks.at(-1)!;
    expect(ack.outbox).toEqual({ id: 'o-12345678', through: 2 });
    expect(ack.rejected).toEqual([{ eventId: second!.eventId, position: 2, problems: [expect.objectContaining({ field: 'data.reason' })] }]);
  });
});

describe('ingest channel: clients that are not our agent', () => {
  it('appends single events in channel order once each and names them in the acknowledgement', async () => {
    const { log, robots, deps, channel } = setup();
    const events = agentEvents(200);
    const records = events.map((event) => channel.record({ ...event, thingName: ROBOT, topic: topics.events(ROBOT) }));
    await ingestChannelBatch(deps, [...records, records[10]!, records[11]!]);
    expect(await logged(log)).toEqual(events.map((event) => event.eventId));
    expect(robots.acks.flatMap((ack) => ack.eventIds ?? [])).toEqual(events.map((event) => event.eventId));
  });
});

describe('ingest channel: one channel for presence, telemetry and events', () => {
  it("keeps a robot's connect, teleoperation and disconnect in the order they were sent", async () => {
    const { log, deps, channel } = setup();
    const connect = connectedEvent(ROBOT, 1, NOW.getTime() - 10_000);
    const [start, stop] = agentEvents(2);
    const records = [
      channel.record({ ...connect, topic: topics.presenceConnected(ROBOT) }),
      channel.record({ sampledAt: new Date(NOW.getTime() - 9_000).toISOString(), cpuTemperatureC: 85, thingName: ROBOT, topic: topics.telemetry(ROBOT) }),
      channel.batch([start!], { id: 'o-12345678', after: 0, first: 1 }),
      channel.batch([stop!], { id: 'o-12345678', after: 0, first: 2 }),
      channel.record({ ...disconnectedEvent(connect, NOW.getTime() - 5_000), topic: topics.presenceDisconnected(ROBOT) }),
    ];
    await ingestChannelBatch(deps, records);
    const page = await log.readEvents(ROBOT);
    expect(page.events.map((entry) => entry.event.type)).toEqual([
      'RobotConnected',
      'AlertRaised',
      'TeleoperationStarted',
      'TeleoperationStopped',
      'RobotDisconnected',
    ]);
    const head = await log.readHead(ROBOT);
    expect(head?.telemetry?.cpuTemperatureC).toBe(85);
    expect(head?.state.presence.status).toBe('offline');
  });

  it('reports a record that is not a robot message and handles the rest', async () => {
    const { log, deps, channel } = setup();
    const [start] = agentEvents(1);
    const seen: string[] = [];
    const result = await ingestChannelBatch({ ...deps, onMessage: (message) => seen.push(message.kind) }, [
      channel.record(undefined),
      channel.record({ topic: 'somewhere/else' }),
      channel.record({ ...connectedEvent('dashboard-1', 1, NOW.getTime()), topic: topics.presenceConnected('dashboard-1') }, 'dashboard-1'),
      channel.batch([start!], { id: 'o-12345678', after: 0, first: 1 }),
    ]);
    expect(seen).toEqual(['invalid', 'invalid', 'ignored', 'events']);
    expect(result.failedSequenceNumbers).toEqual([]);
    expect(await logged(log)).toEqual([start!.eventId]);
  });
});

describe('ingest channel: faults', () => {
  it("decides again on the head a person's command left, appending nothing twice", async () => {
    const { log, deps, channel } = setup();
    const events = agentEvents(120);
    let interfered = false;
    const original = log.append.bind(log);
    log.append = async (request: AppendRequest): Promise<AppendOutcome> => {
      if (!interfered && request.expectedLastSeq > 0) {
        interfered = true;
        // A person's command lands between two of the consumer's writes.
        const head = (await log.readHead(ROBOT))!;
        await original({ ...request, events: [], telemetry: undefined, expectedRevision: head.revision, expectedLastSeq: head.lastSeq, state: head.state, outbox: head.outbox });
      }
      return original(request);
    };
    const result = await ingestChannelBatch(deps, [channel.batch(events.slice(0, 100), { id: 'o-12345678', after: 0, first: 1 }), channel.batch(events.slice(100), { id: 'o-12345678', after: 0, first: 101 })]);
    expect(interfered).toBe(true);
    expect(result.failedSequenceNumbers).toEqual([]);
    expect(await logged(log)).toEqual(events.map((event) => event.eventId));
  });

  it('reports the first message not written when the log fails, and a redelivery completes it without doubles', async () => {
    const { log, robots, deps, channel } = setup();
    const events = agentEvents(300);
    const records = [0, 1, 2].map((index) => channel.batch(events.slice(index * 100, index * 100 + 100), { id: 'o-12345678', after: 0, first: index * 100 + 1 }));
    const original = log.append.bind(log);
    let calls = 0;
    log.append = async (request) => {
      calls += 1;
      if (calls === 4) throw new Error('ProvisionedThroughputExceededException');
      return original(request);
    };
    const result = await ingestChannelBatch(deps, records);
    // Three writes of 45 events: messages 0 (100 events) is not complete, so the failure names it.
    expect(result.failedSequenceNumbers).toEqual([records[1]!.sequenceNumber]);
    const written = await logged(log);
    expect(written).toEqual(events.slice(0, written.length).map((event) => event.eventId));
    expect(robots.acks.at(-1)?.outbox?.through).toBe(written.length);
    // Lambda retries from the failed record on.
    log.append = original;
    await ingestChannelBatch(deps, records.slice(1));
    expect(await logged(log)).toEqual(events.map((event) => event.eventId));
  });
});
