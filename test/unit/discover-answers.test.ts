import { describe, expect, it } from 'vitest';
import { LiveMessage, topics } from '../../schemas/index.js';
import { parseStreamRecord } from '../../functions/adapters/event-log-items.js';
import { ingestChannelBatch, type ChannelRecord } from '../../functions/app/ingest/ingest-channel.js';
import { liveMessagesOf } from '../../functions/app/live/live-messages.js';
import { RecordingEventLog } from '../support/recording-event-log.js';
import { StreamRecords } from '../support/stream-records.js';

/**
 * Answers to POST /api/v2/discover on the live feed: the agent's sample answering report-now carries the request's
 * id, and the RobotTelemetry the broadcaster makes of it says which request it answers; other samples say nothing.
 */

const ROBOT = 'xle-DA0001';
const NOW = new Date('2026-12-01T12:00:00.000Z');

let next = 1;
const sample = (body: Record<string, unknown>): ChannelRecord => ({
  sequenceNumber: String(next++).padStart(21, '0'),
  partitionKey: ROBOT,
  data: { ...body, thingName: ROBOT, topic: topics.telemetry(ROBOT) },
});

async function liveFeed(records: ChannelRecord[][]): Promise<LiveMessage[]> {
  const log = new RecordingEventLog();
  const stream = new StreamRecords();
  const robots = { send: async () => undefined };
  for (const batch of records) await ingestChannelBatch({ log, robots, now: () => NOW }, batch);
  return stream
    .records(log.takeStream())
    .flatMap((record) => liveMessagesOf(parseStreamRecord(record), NOW))
    .map((message) => LiveMessage.parse(message));
}

describe('discover answers on the live feed', () => {
  it('puts the requestId of the report-now a sample answers on its RobotTelemetry, and on no other', async () => {
    const messages = await liveFeed([
      [sample({ sampledAt: '2026-12-01T11:59:00.000Z', cpuPercent: 10 })],
      [sample({ sampledAt: '2026-12-01T11:59:30.000Z', cpuPercent: 12, requestId: '6f1c3a9e-2b1d-4d53-9a44-3c1f6f2c8b10' })],
      [sample({ sampledAt: '2026-12-01T11:59:50.000Z', cpuPercent: 14 })],
    ]);
    const telemetry = messages.filter((message) => message.type === 'RobotTelemetry');
    expect(telemetry.map((message) => message.requestId)).toEqual([undefined, '6f1c3a9e-2b1d-4d53-9a44-3c1f6f2c8b10', undefined]);
    // The id is the request's, not a metric: the telemetry itself is as the robot measured it.
    expect(telemetry[1]?.data).not.toHaveProperty('requestId');
    expect(telemetry[1]?.data).toMatchObject({ cpuPercent: 12, sampledAt: '2026-12-01T11:59:30.000Z' });
  });

  it('refuses a requestId that is not a string, naming it', async () => {
    const messages = await liveFeed([[sample({ sampledAt: '2026-12-01T11:59:00.000Z', cpuPercent: 10, requestId: 42 })]]);
    expect(messages.filter((message) => message.type === 'RobotTelemetry')).toEqual([]);
    expect(messages.find((message) => message.type === 'DeviceMessagesRejected')?.data).toMatchObject({
      lastReason: expect.stringMatching(/^requestId /),
    });
  });
});
