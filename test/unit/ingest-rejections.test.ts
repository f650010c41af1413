import { describe, expect, it } from 'vitest';
import { topics, type EventsAck } from '../../schemas/index.js';
import { EARLIEST_DEVICE_TIME, MAX_CLOCK_AHEAD_MS } from '../../functions/app/ingest/channel-message.js';
import { ingestChannelBatch, type ChannelRecord } from '../../functions/app/ingest/ingest-channel.js';
import type { RobotCommandChannel } from '../../functions/app/ports.js';
import { toRobotView } from '../../functions/domain/robot-view.js';
import { InMemoryEventLog } from '../support/in-memory-event-log.js';

/**
 * What the ingest refuses of a robot's own messages: timestamps outside the bounds (both ways, samples and events
 * alike), and the per-robot count with the last reason, recorded once per robot and batch as DeviceMessagesRejected.
 */

const ROBOT = 'lekiwi-RJ0001';
const NOW = new Date('2026-12-01T12:00:00.000Z');
const at = (offsetMs: number) => new Date(NOW.getTime() + offsetMs).toISOString();

class Channel {
  private next = 1;
  record(data: Record<string, unknown>, partitionKey = ROBOT): ChannelRecord {
    return { sequenceNumber: String(this.next++).padStart(21, '0'), partitionKey, data };
  }
  sample(sample: Record<string, unknown>, robot = ROBOT): ChannelRecord {
    return this.record({ ...sample, thingName: robot, topic: topics.telemetry(robot) }, robot);
  }
  event(event: Record<string, unknown>, robot = ROBOT): ChannelRecord {
    return this.record({ ...event, thingName: robot, topic: topics.events(robot) }, robot);
  }
  batch(events: Record<string, unknown>[], robot = ROBOT): ChannelRecord {
    return this.record({ events, thingName: robot, topic: topics.events(robot) }, robot);
  }
}

class Robots implements RobotCommandChannel {
  readonly acks: { robotId: string; ack: EventsAck }[] = [];
  async send(robotId: string, _request: string, payload: unknown): Promise<void> {
    this.acks.push({ robotId, ack: payload as EventsAck });
  }
}

function setup() {
  const log = new InMemoryEventLog();
  const robots = new Robots();
  return { log, robots, channel: new Channel(), deps: { log, robots, now: () => NOW, sleep: async () => {} } };
}

const started = (eventId: string, occurredAt: string) => ({ eventId, occurredAt, type: 'TeleoperationStarted', data: { signals: ['actions'] } });

async function eventsOf(log: InMemoryEventLog, robotId = ROBOT) {
  return (await log.readEvents(robotId, { limit: 1000 })).events.map((recorded) => recorded.event);
}

describe('robot timestamps are bounded both ways', () => {
  it('refuses a single event from year 9999 with the reason, and appends nothing of it', async () => {
    const { log, robots, channel, deps } = setup();
    await ingestChannelBatch(deps, [channel.event(started('evt-year-9999', '9999-01-01T00:00:00.000Z'))]);

    expect((await eventsOf(log)).map((event) => event.type)).not.toContain('TeleoperationStarted');
    const rejected = robots.acks.flatMap(({ ack }) => ack.rejected ?? []);
    expect(rejected).toEqual([{ problems: [{ field: 'occurredAt', message: expect.stringContaining('ahead of the cloud') }] }]);
  });

  it('refuses an event of a batch from year 9999 or before the earliest device time, and takes the others', async () => {
    const { log, robots, channel, deps } = setup();
    await ingestChannelBatch(deps, [
      channel.batch([
        started('evt-future-1', '9999-12-31T23:59:59.000Z'),
        started('evt-fine-001', at(-60_000)),
        started('evt-unset-01', '1970-01-01T00:00:10.000Z'),
      ]),
    ]);

    expect((await eventsOf(log)).filter((event) => event.type === 'TeleoperationStarted').map((event) => event.eventId)).toEqual([
      'evt-fine-001',
    ]);
    const rejected = robots.acks.flatMap(({ ack }) => ack.rejected ?? []);
    expect(rejected).toEqual([
      { eventId: 'evt-future-1', problems: [{ field: 'occurredAt', message: expect.stringContaining('ahead of the cloud') }] },
      { eventId: 'evt-unset-01', problems: [{ field: 'occurredAt', message: expect.stringContaining(`before ${EARLIEST_DEVICE_TIME}`) }] },
    ]);
  });

  it('takes an event just inside the bounds', async () => {
    const { log, robots, channel, deps } = setup();
    await ingestChannelBatch(deps, [
      channel.batch([started('evt-edge-ahead', at(MAX_CLOCK_AHEAD_MS - 1_000)), { ...started('evt-edge-early', EARLIEST_DEVICE_TIME), type: 'EventsDropped', data: { count: 1 } }]),
    ]);
    expect((await eventsOf(log)).map((event) => event.eventId)).toEqual(expect.arrayContaining(['evt-edge-ahead', 'evt-edge-early']));
    expect(robots.acks.flatMap(({ ack }) => ack.rejected ?? [])).toEqual([]);
  });

  it('refuses a sample from before the earliest device time, as it refuses one from the future', async () => {
    const { log, channel, deps } = setup();
    await ingestChannelBatch(deps, [channel.sample({ sampledAt: '1970-01-01T00:01:00.000Z', cpuPercent: 5 })]);
    expect((await log.readHead(ROBOT))?.telemetry ?? null).toBeNull();
    const [rejection] = (await eventsOf(log)).filter((event) => event.type === 'DeviceMessagesRejected');
    expect(rejection?.data).toMatchObject({ count: 1, lastReason: expect.stringMatching(/^sampledAt is before/) });
  });
});

describe('a robot’s refused messages are counted in its record', () => {
  it('appends one DeviceMessagesRejected per robot and batch, with the count and the last reason and topic', async () => {
    // Given a batch with a valid sample, a sample with an unknown field, and a batch with one event from year 9999
    const { log, channel, deps } = setup();
    const records = [
      channel.sample({ sampledAt: at(-5_000), cpuPercent: 10 }),
      channel.sample({ sampledAt: at(-4_000), cpuPercent: 11, fanRpm: 3000 }),
      channel.batch([started('evt-ok-00001', at(-3_000)), started('evt-far-00001', '9999-01-01T00:00:00.000Z')]),
    ];

    // When the ingest handles it
    const result = await ingestChannelBatch(deps, records);

    // Then one event counts both refusals, the last one's reason and topic kept
    expect(result.robots).toEqual([expect.objectContaining({ robotId: ROBOT, rejected: 2 })]);
    const rejections = (await eventsOf(log)).filter((event) => event.type === 'DeviceMessagesRejected');
    expect(rejections).toEqual([
      expect.objectContaining({
        eventId: `rejected:${records[1]!.sequenceNumber}`,
        at: NOW.toISOString(),
        data: { count: 2, lastReason: expect.stringMatching(/^occurredAt is more than 5 minutes ahead/), lastTopic: topics.events(ROBOT) },
      }),
    ]);
    // And the robot's state, and so its view, says so
    const head = await log.readHead(ROBOT);
    const view = toRobotView(head!.state, head!.lastSeq, null);
    expect(view.rejectedMessages).toEqual({
      count: 2,
      last: { reason: expect.stringContaining('occurredAt'), topic: topics.events(ROBOT), at: NOW.toISOString() },
    });
    // And what was valid went in as usual
    expect(head?.telemetry?.cpuPercent).toBe(10);
  });

  it('adds up over batches, and a batch delivered again counts nothing twice', async () => {
    const { log, channel, deps } = setup();
    const first = [channel.sample({ sampledAt: 'yesterday', cpuPercent: 1 })];
    const second = [channel.sample({ sampledAt: at(-1_000), cpuPercent: 500 }), channel.event({ eventId: 'x' })];
    await ingestChannelBatch(deps, first);
    await ingestChannelBatch(deps, second);
    await ingestChannelBatch(deps, second);
    await ingestChannelBatch(deps, [...first, ...second]);

    const rejections = (await eventsOf(log)).filter((event) => event.type === 'DeviceMessagesRejected');
    expect(rejections.map((event) => event.data)).toEqual([
      expect.objectContaining({ count: 1, lastReason: expect.stringContaining('sampledAt') }),
      expect.objectContaining({ count: 2, lastTopic: topics.events(ROBOT) }),
    ]);
    const head = await log.readHead(ROBOT);
    expect(toRobotView(head!.state, head!.lastSeq, null).rejectedMessages.count).toBe(3);
  });

  it('records nothing for messages it cannot pin on a robot, nor for a robot whose messages were all fine', async () => {
    const { log, channel, deps } = setup();
    const result = await ingestChannelBatch(deps, [
      channel.record({ sampledAt: at(0), thingName: 'not a robot', topic: 'dt/heartbeat/not a robot/telemetry' }, 'not a robot'),
      channel.record({ sampledAt: at(0) }, ROBOT),
      channel.sample({ sampledAt: at(-1_000), cpuPercent: 3 }, 'xle-RJ0002'),
    ]);
    expect(await eventsOf(log, 'xle-RJ0002')).not.toContainEqual(expect.objectContaining({ type: 'DeviceMessagesRejected' }));
    // A record without a topic is no robot message (no rule wrote it): logged and counted only.
    expect(await eventsOf(log, ROBOT)).toEqual([]);
    expect(result.robots.find((robot) => robot.robotId === 'not a robot')?.rejected).toBe(1);
  });
});
