import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FleetMetrics, RobotView, topics } from '../../schemas/index.js';
import { PgFleetQueries } from '../../functions/adapters/pg-fleet-queries.js';
import { PgReadModelWriter } from '../../functions/adapters/pg-read-models.js';
import { ingestChannelBatch, type ChannelRecord } from '../../functions/app/ingest/ingest-channel.js';
import { projectStream } from '../../functions/adapters/stream-consumers.js';
import { rebuildReadModels } from '../../functions/app/rebuild-read-models.js';
import { createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { readRows, truncateReadModels } from '../support/read-model-tables.js';
import { RecordingEventLog } from '../support/recording-event-log.js';
import { StreamRecords, streamEvent } from '../support/stream-records.js';

/**
 * A robot's refused messages, from the ingest to what ops see: the ingest's DeviceMessagesRejected in the log, the
 * projector's robots row (rejected_messages, last_rejection) on PostgreSQL, the robot's view and GET /metrics.
 */

const BROKEN = 'lekiwi-FW0001';
const ALSO_BROKEN = 'xle-FW0002';
const FINE = 'lekiwi-FW0003';

let db: TestDatabase;
let writer: PgReadModelWriter;
let queries: PgFleetQueries;

beforeAll(async () => {
  db = await createTestDatabase();
  writer = new PgReadModelWriter(db.pool, { telemetryRetentionDays: 7 });
  queries = new PgFleetQueries(db.pool);
});
afterAll(() => db.drop());
beforeEach(() => truncateReadModels(db.pool));

function channel() {
  let next = 1;
  const record = (robot: string, kind: 'telemetry' | 'events', body: Record<string, unknown>): ChannelRecord => ({
    sequenceNumber: String(next++).padStart(21, '0'),
    partitionKey: robot,
    data: { ...body, thingName: robot, topic: kind === 'telemetry' ? topics.telemetry(robot) : topics.events(robot) },
  });
  return {
    sample: (robot: string, body: Record<string, unknown>) => record(robot, 'telemetry', body),
    event: (robot: string, body: Record<string, unknown>) => record(robot, 'events', body),
  };
}

const now = () => new Date();
const ago = (ms: number) => new Date(Date.now() - ms).toISOString();

describe('refused messages in the read model', () => {
  it('shows each robot’s count and last reason in its view, and sums them in the fleet metrics', async () => {
    // Given robots whose firmware sends what the cloud refuses, and one whose firmware is fine
    const log = new RecordingEventLog();
    const stream = new StreamRecords();
    const records = channel();
    const robots = { send: async () => undefined };
    await ingestChannelBatch({ log, robots, now }, [
      records.sample(BROKEN, { sampledAt: ago(5_000), cpuPercent: 20 }),
      records.sample(BROKEN, { sampledAt: ago(4_000), cpuPercent: 250 }),
      records.sample(ALSO_BROKEN, { sampledAt: ago(4_000), cpuPercent: 30 }),
      records.sample(FINE, { sampledAt: ago(4_000), cpuPercent: 40 }),
    ]);
    await ingestChannelBatch({ log, robots, now }, [
      records.event(BROKEN, { eventId: 'evt-from-the-future', occurredAt: '9999-01-01T00:00:00.000Z', type: 'EventsDropped', data: { count: 1 } }),
      records.event(ALSO_BROKEN, { eventId: 'short' }),
    ]);

    // When the log's stream is projected
    expect(await projectStream(streamEvent(stream.records(log.takeStream())), writer)).toEqual({ batchItemFailures: [] });

    // Then the broken robot's view counts both, with the last reason and where it came from
    const broken = RobotView.parse(await queries.getRobot(BROKEN));
    expect(broken.rejectedMessages).toEqual({
      count: 2,
      last: { reason: expect.stringMatching(/^occurredAt is more than 5 minutes ahead/), topic: topics.events(BROKEN), at: expect.any(String) },
    });
    expect(RobotView.parse(await queries.getRobot(ALSO_BROKEN)).rejectedMessages).toMatchObject({
      count: 1,
      last: { reason: expect.stringMatching(/^type /), topic: topics.events(ALSO_BROKEN) },
    });
    expect(RobotView.parse(await queries.getRobot(FINE)).rejectedMessages).toEqual({ count: 0, last: null });
    // And the robot list carries it too, so a robot with broken firmware can be found
    const listed = await queries.listRobots({ limit: 10 });
    expect(listed.items.find((robot) => robot.robotId === BROKEN)?.rejectedMessages.count).toBe(2);
    // And /metrics sums them
    expect(FleetMetrics.parse(await queries.metrics()).rejectedMessages).toEqual({ total: 3, robots: 2 });
    // And the columns hold them for queries
    const rows = await readRows(db.pool, 'robots');
    expect(rows.find((row) => row.robot_id === BROKEN)).toMatchObject({ rejected_messages: 2, last_rejection: { topic: topics.events(BROKEN) } });

    // And a rebuild from the log gives the same
    await truncateReadModels(db.pool);
    await rebuildReadModels(log, writer);
    expect(RobotView.parse(await queries.getRobot(BROKEN)).rejectedMessages.count).toBe(2);
    expect((await queries.metrics()).rejectedMessages).toEqual({ total: 3, robots: 2 });
  });
});
