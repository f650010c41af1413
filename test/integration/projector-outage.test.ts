import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DynamoDBStreamEvent } from 'aws-lambda';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DynamoEventLog } from '../../functions/adapters/dynamo-event-log.js';
import { PgReadModelWriter } from '../../functions/adapters/pg-read-models.js';
import { executeRobotCommand } from '../../functions/app/execute-robot-command.js';
import { projectStream } from '../../functions/adapters/stream-consumers.js';
import { rebuildReadModels } from '../../functions/app/rebuild-read-models.js';
import type { RobotCommand } from '../../functions/domain/robot-decider.js';
import { createFileDeadLetters, type FileDeadLetters } from '../../local/file-dead-letters.js';
import { startStreamPoller, type StreamPoller } from '../../local/stream-poller.js';
import { PROJECTED_RECORD_PATTERNS } from '../../schemas/stream-filters.js';
import { createTestEventLog, streamsClient } from '../support/dynamo.js';
import { ADMIN_URL, createTestDatabase, type TestDatabase } from '../support/postgres.js';
import { expectedAfterRebuild, readRows, snapshot } from '../support/read-model-tables.js';
import { POLL } from '../support/poll.js';

/**
 * The issue this answers: PostgreSQL was unavailable for 21 seconds, the projector set records aside after its
 * retries and projected past the gap, and events were missing from the read model until a manual rebuild. Here the
 * read-model database refuses connections for 30 seconds while robots keep appending events; afterwards the read
 * model must be exactly what a replay of the log gives, with nothing set aside and no rebuild.
 */
const OUTAGE_MS = Number(process.env.PROJECTOR_OUTAGE_MS ?? 30_000);
const ROBOTS = ['lekiwi-LK0001', 'lekiwi-LK0002', 'xle-XL0003'];
const T0 = Date.parse('2026-11-02T09:00:00.000Z');

let table: Awaited<ReturnType<typeof createTestEventLog>>;
let db: TestDatabase;
let rebuilt: TestDatabase;
let stateDir: string;
const stops: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  table = await createTestEventLog();
  db = await createTestDatabase();
  rebuilt = await createTestDatabase();
  stateDir = await mkdtemp(path.join(tmpdir(), 'projector-outage-'));
});
afterAll(async () => {
  for (const stop of stops.splice(0).reverse()) await stop();
  await setConnectionsAllowed(true).catch(() => undefined);
  await db.drop();
  await rebuilt.drop();
  await table.drop();
  await rm(stateDir, { recursive: true, force: true });
});

/** From the server's `postgres` database: let the test database take connections, or refuse them and cut its own. */
async function setConnectionsAllowed(allowed: boolean): Promise<void> {
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  try {
    await admin.query(`ALTER DATABASE ${db.name} WITH ALLOW_CONNECTIONS ${allowed}`);
    if (!allowed) {
      await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [db.name]);
    }
  } finally {
    await admin.end();
  }
}

/**
 * One robot's day, over and over: it connects, overheats (an alert), is driven, is marked failed by an engineer,
 * cools down (the alert clears), is recovered and disconnects. Every command appends at least one event.
 */
function commandOf(robotId: string, step: number, minutes: number): RobotCommand {
  const at = new Date(T0 + minutes * 60_000).toISOString();
  const cycle = Math.floor(step / 8);
  const presence = { clientId: robotId, timestamp: T0 + minutes * 60_000, sessionIdentifier: `${robotId}-${cycle}`, principalIdentifier: 'a1b2c3d4e5f6', versionNumber: cycle + 1 };
  switch (step % 8) {
    case 0:
      return { type: 'RecordPresence', presence: { ...presence, eventType: 'connected', ipAddress: '192.168.7.21' } };
    case 1:
      return { type: 'RecordTelemetry', sample: { sampledAt: at, cpuTemperatureC: 85, cpuPercent: 40 } };
    case 2:
      return { type: 'RecordAgentEvent', event: { type: 'TeleoperationStarted', eventId: `${robotId}-start-${cycle}`, occurredAt: at, data: { operatorAddress: '10.0.0.5', signals: ['actions'] } } };
    case 3:
      return { type: 'RecordAgentEvent', event: { type: 'TeleoperationStopped', eventId: `${robotId}-stop-${cycle}`, occurredAt: at, data: { reason: 'operator-idle' } } };
    case 4:
      return { type: 'MarkFailed', eventId: `${robotId}-fail-${cycle}`, at, reason: 'gripper jammed', by: 'engineer@fleet' };
    case 5:
      return { type: 'RecordTelemetry', sample: { sampledAt: at, cpuTemperatureC: 60, cpuPercent: 10 } };
    case 6:
      return { type: 'Recover', eventId: `${robotId}-recover-${cycle}`, at, by: 'engineer@fleet', note: 'cleared the gripper' };
    default:
      return { type: 'RecordPresence', presence: { ...presence, eventType: 'disconnected', clientInitiatedDisconnect: false, disconnectReason: 'CONNECTION_LOST' } };
  }
}

describe('stream projector during a PostgreSQL outage', () => {
  let log: DynamoEventLog;
  let deadLetters: FileDeadLetters;
  let poller: StreamPoller;
  const onFailure = vi.fn();
  const outcomes = { ok: 0, failed: 0 };
  let minutes = 0;
  const steps = new Map<string, number>();

  /** The next command of one robot, in turn, through the real command loop on DynamoDB Local. */
  async function append(robotId: string): Promise<void> {
    const step = steps.get(robotId) ?? 0;
    steps.set(robotId, step + 1);
    minutes += 1;
    const clock = minutes;
    await executeRobotCommand(log, robotId, commandOf(robotId, step, clock), { now: () => new Date(T0 + clock * 60_000) });
  }

  /** Appends round robin over the robots for `ms`, a command every `everyMs`. */
  async function appendFor(ms: number, everyMs: number): Promise<number> {
    const until = Date.now() + ms;
    let count = 0;
    while (Date.now() < until) {
      await append(ROBOTS[count % ROBOTS.length]!);
      count++;
      await sleep(everyMs);
    }
    return count;
  }

  beforeAll(() => {
    log = new DynamoEventLog({ client: table.client, tableName: table.tableName });
    deadLetters = createFileDeadLetters(path.join(stateDir, 'dead-letters', 'stream-projector.jsonl'));
    const writer = new PgReadModelWriter(db.pool, { telemetryRetentionDays: 7 });
    const handler = async (event: DynamoDBStreamEvent) => {
      const response = await projectStream(event, writer, { log, deadLetters });
      if (response.batchItemFailures.length > 0) outcomes.failed++;
      else outcomes.ok++;
      return response;
    };
    const client = streamsClient();
    // The projector's mapping as deployed: filtered, batches of 1,000, bisect, partial failures, retried forever.
    poller = startStreamPoller({
      client,
      streamArn: table.streamArn,
      handler,
      batchSize: 1000,
      filters: PROJECTED_RECORD_PATTERNS,
      bisectBatchOnFunctionError: true,
      reportBatchItemFailures: true,
      maximumRetryAttempts: -1,
      onFailure,
      log: () => undefined,
    });
    stops.push(async () => {
      await poller.stop();
      client.destroy();
    });
  });

  it(
    'catches up after the database refused connections for 30 s: the read model is a replay of the log, nothing set aside',
    async () => {
      // Given robots whose history is being projected
      for (const robotId of ROBOTS) await append(robotId);
      await vi.waitFor(async () => expect(await readRows(db.pool, 'robots')).toHaveLength(ROBOTS.length), POLL);

      // When the read-model database refuses connections for 30 s while the robots carry on
      const appending = appendFor(OUTAGE_MS + 4_000, 100);
      await sleep(2_000);
      await setConnectionsAllowed(false);
      const failedBefore = outcomes.failed;
      await sleep(OUTAGE_MS);
      const failedDuring = outcomes.failed - failedBefore;
      await setConnectionsAllowed(true);
      const appended = await appending;

      // Then the projector was failing (and retrying) throughout
      expect(failedDuring).toBeGreaterThan(3);
      expect(appended).toBeGreaterThan(50);
      // and without anyone running a rebuild, the read model comes to hold every event of the log, in order
      const events = async () => (await Promise.all(ROBOTS.map(async (robotId) => (await log.readEvents(robotId, { limit: 1000 })).events))).flat();
      const logEvents = await events();
      expect(logEvents.length).toBeGreaterThan(appended);
      await vi.waitFor(
        async () => {
          const rows = await readRows(db.pool, 'robot_events');
          expect(rows.map((row) => [row.robot_id, Number(row.seq), row.event_id, row.type])).toEqual(
            logEvents.map((recorded) => [recorded.event.robotId, recorded.seq, recorded.event.eventId, recorded.event.type]),
          );
        },
        // Catching up after a 30 s outage, through the poller's retry backoff: longer than the default wait.
        { ...POLL, timeout: 60_000 },
      );
      // with each robot as its head in the log has it
      await poller.idle({ timeoutMs: 30_000 });
      const robots = await readRows(db.pool, 'robots');
      for (const robotId of ROBOTS) {
        const head = (await log.readHead(robotId))!;
        expect(robots.find((row) => row.robot_id === robotId), robotId).toMatchObject({
          last_seq: String(head.lastSeq),
          state: head.state,
          telemetry: head.telemetry,
        });
      }
      // and every read model is what a rebuild from the log gives (but the sample history, which the log does not keep)
      const incremental = await snapshot(db.pool);
      await rebuildReadModels(log, new PgReadModelWriter(rebuilt.pool, { telemetryRetentionDays: 7 }));
      expect(await snapshot(rebuilt.pool)).toEqual(expectedAfterRebuild(incremental));
      expect(incremental.alerts.length).toBeGreaterThan(0);
      expect(incremental.teleoperation_sessions.length).toBeGreaterThan(0);
      // Nothing was set aside, by the projector or by the mapping
      expect(await deadLetters.count()).toBe(0);
      expect(onFailure).not.toHaveBeenCalled();
    },
    OUTAGE_MS + 150_000,
  );
});
