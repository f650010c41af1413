import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DomainEvent, LIVE_MESSAGE_MAX_BYTES, RobotsUpdated, type RobotView, type TelemetrySample } from '../../schemas/index.js';
import { HEAD_RECORD_PATTERNS, matchesAnyFilter } from '../../schemas/stream-filters.js';
import { telemetryView } from '../../functions/domain/latest-telemetry.js';
import { fold, initialRobotState } from '../../functions/domain/robot-state.js';
import { toRobotView } from '../../functions/domain/robot-view.js';
import { chunkRobotsUpdated, latestPerRobot } from '../../functions/app/live/robots-updated.js';
import { messageSchemas } from '../../schemas/json-schemas.js';
import { robotHistory } from '../support/read-model-seed.js';

/** The pure core of coalesced telemetry: latest view per robot, and rounds cut under API Gateway's message limit. */

const AT = '2026-12-01T10:00:00.000Z';
const bytes = (message: unknown) => Buffer.byteLength(JSON.stringify(message), 'utf8');

/**
 * A robot as large as a view gets: every metric, three alerts, teleoperated, failed with a 500-character reason, a
 * rotated certificate and a failed rotation with a 500-character detail.
 */
function largestView(robotId: string): RobotView {
  const certificate = (type: string, data: Record<string, unknown>) =>
    DomainEvent.parse({ eventId: `${type}-1`, robotId, at: AT, version: 1, type, data });
  const state = fold(initialRobotState(robotId), [
    ...robotHistory(robotId, { teleoperated: true, alerts: ['warning', 'warning', 'critical'], failed: 'ß'.repeat(500) }),
    certificate('CertificateRotated', { requestId: 'rotation-0001', oldCertificateId: 'a'.repeat(64), newCertificateId: 'b'.repeat(64), notAfter: AT }),
    certificate('CertificateRotationFailed', { requestId: 'rotation-0002', reason: 'X'.repeat(64), detail: 'ß'.repeat(500) }),
  ]);
  const sample: TelemetrySample = {
    sampledAt: '2026-12-01T09:59:59.123+00:00',
    cpuPercent: 99.99,
    memoryPercent: 88.88,
    memoryUsedBytes: 8_000_000_000,
    diskPercent: 77.77,
    cpuTemperatureC: 85.5,
    uptimeSeconds: 12_345_678.9,
    load1: 3.14,
    networkRxBytes: 123_456_789_012,
    networkTxBytes: 123_456_789_012,
    agentVersion: 'v'.repeat(64),
    lerobotVersion: 'l'.repeat(64),
  };
  return toRobotView(state, 9_999, telemetryView(sample, true, new Date(AT)));
}

/** A small view of a robot, numbered so a test can tell which write it is. */
function viewOf(robotId: string, lastSeq: number): RobotView {
  return toRobotView(initialRobotState(robotId), lastSeq, null);
}

const robotIds = fc.uniqueArray(fc.stringMatching(/^lekiwi-[A-Z0-9]{4,12}$/), { minLength: 0, maxLength: 60 });

describe('latestPerRobot', () => {
  it('keeps exactly the highest revision of each robot, whatever the order of the writes', () => {
    fc.assert(
      fc.property(
        robotIds.chain((ids) =>
          fc.tuple(
            fc.constant(ids),
            // Each robot written 1–5 times with distinct revisions, then all the writes shuffled together.
            fc.shuffledSubarray(
              ids.flatMap((robotId, index) => [1, 2, 3, 4, 5].slice(0, 1 + (index % 5)).map((revision) => ({ robotId, revision }))),
              { minLength: ids.reduce((n, _, index) => n + 1 + (index % 5), 0) },
            ),
          ),
        ),
        ([ids, writes]) => {
          const latest = latestPerRobot(writes);
          expect([...latest.keys()].sort()).toEqual([...ids].sort());
          ids.forEach((robotId, index) => expect(latest.get(robotId)?.revision).toBe(1 + (index % 5)));
        },
      ),
    );
  });
});

describe('chunkRobotsUpdated', () => {
  it('delivers every robot’s latest view exactly once per round, each message under the limit, whatever the order', () => {
    fc.assert(
      fc.property(
        robotIds.chain((ids) =>
          fc.tuple(
            fc.constant(ids),
            fc.array(fc.record({ robot: fc.nat({ max: Math.max(0, ids.length - 1) }), revision: fc.nat({ max: 1000 }) }), {
              maxLength: ids.length === 0 ? 0 : 200,
            }),
            fc.integer({ min: 2_000, max: 20_000 }),
          ),
        ),
        ([ids, picks, maxBytes]) => {
          // Writes of the robots in any order, some several times; the round is the latest of each.
          const writes = picks.map(({ robot, revision }) => ({ robotId: ids[robot] as string, revision }));
          const latest = latestPerRobot(writes);
          const views = [...latest.values()].map(({ robotId, revision }) => viewOf(robotId, revision));
          const { messages, oversized } = chunkRobotsUpdated(views, AT, maxBytes);

          expect(oversized).toEqual([]);
          const delivered = messages.flatMap((message) => message.robots);
          expect(delivered.map((view) => view.robotId).sort()).toEqual([...latest.keys()].sort());
          for (const view of delivered) expect(view.lastSeq).toBe(latest.get(view.robotId)?.revision);
          for (const message of messages) {
            expect(bytes(message)).toBeLessThan(maxBytes);
            expect(message.robots.length).toBeGreaterThan(0);
            expect(message).toMatchObject({ type: 'RobotsUpdated', at: AT });
          }
        },
      ),
    );
  });

  it('fills messages close to the limit: no two consecutive messages would have fit in one', () => {
    const views = Array.from({ length: 300 }, (_, i) => viewOf(`lekiwi-F${String(i).padStart(5, '0')}`, i));
    const { messages } = chunkRobotsUpdated(views, AT, 10_000);
    for (let i = 0; i + 1 < messages.length; i++) {
      const merged = { ...messages[i]!, robots: [...messages[i]!.robots, messages[i + 1]!.robots[0]!] };
      expect(bytes(merged)).toBeGreaterThanOrEqual(10_000);
    }
  });

  it('cuts 10,000 robots’ largest views into messages under API Gateway’s 128 KB, each a valid RobotsUpdated', () => {
    const template = largestView('lekiwi-TEMPLATE');
    const views = Array.from({ length: 10_000 }, (_, i) => ({ ...template, robotId: `lekiwi-LK${String(i).padStart(8, '0')}` }));
    const { messages, oversized } = chunkRobotsUpdated(views, AT);

    expect(oversized).toEqual([]);
    expect(messages.flatMap((message) => message.robots.map((view) => view.robotId))).toEqual(views.map((view) => view.robotId));
    for (const message of messages) {
      expect(bytes(message)).toBeLessThan(LIVE_MESSAGE_MAX_BYTES);
      expect(LIVE_MESSAGE_MAX_BYTES).toBeLessThan(128 * 1024);
    }
    expect(RobotsUpdated.parse(messages[0]).robots[0]?.certificate).toMatchObject({ id: 'b'.repeat(64), notAfter: AT });
    // Fuller than a view per message: the round is a few dozen messages, not 10,000.
    expect(messages.length).toBeLessThan(10_000 / 20);
  });

  it('leaves out, and names, a view that cannot fit a message even alone', () => {
    const small = viewOf('lekiwi-SMALL1', 1);
    const { messages, oversized } = chunkRobotsUpdated([small, largestView('lekiwi-HUGE01')], AT, bytes(small) + 200);
    expect(oversized).toEqual(['lekiwi-HUGE01']);
    expect(messages.map((message) => message.robots.map((view) => view.robotId))).toEqual([['lekiwi-SMALL1']]);
  });
});

describe('the coalescer’s stream filter', () => {
  it('takes every head write (with or without a new sample), and no event, marker or removal', () => {
    const record = (image: Record<string, unknown>) => ({ eventName: 'MODIFY', dynamodb: { NewImage: image } });
    expect(matchesAnyFilter(record({ kind: { S: 'head' }, telemetryChanged: { BOOL: true } }), HEAD_RECORD_PATTERNS)).toBe(true);
    expect(matchesAnyFilter(record({ kind: { S: 'head' }, telemetryChanged: { BOOL: false } }), HEAD_RECORD_PATTERNS)).toBe(true);
    expect(matchesAnyFilter(record({ kind: { S: 'event' } }), HEAD_RECORD_PATTERNS)).toBe(false);
    expect(matchesAnyFilter(record({ kind: { S: 'marker' } }), HEAD_RECORD_PATTERNS)).toBe(false);
    expect(matchesAnyFilter({ eventName: 'REMOVE', dynamodb: {} }, HEAD_RECORD_PATTERNS)).toBe(false);
  });
});

describe('the published JSON Schemas', () => {
  const validator = (name: string) => {
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats.default(ajv);
    return ajv.compile(messageSchemas()[name] as object);
  };

  it('accept a RobotsUpdated round as the coalescer makes it, and refuse one without robots', () => {
    const robotsUpdated = validator('live-robots-updated');
    const { messages } = chunkRobotsUpdated([largestView('lekiwi-LK000001'), viewOf('lekiwi-LK000002', 3)], AT);
    expect(robotsUpdated(JSON.parse(JSON.stringify(messages[0])))).toBe(true);
    expect(robotsUpdated({ type: 'RobotsUpdated', at: AT })).toBe(false);
    expect(robotsUpdated({ type: 'RobotTelemetry', at: AT, robots: [] })).toBe(false);
  });

  it('accept a subscribe with a known rate or none, and refuse an unknown rate', () => {
    const client = validator('live-client-message');
    expect(client({ action: 'subscribe', robotIds: ['*'], telemetry: '1s' })).toBe(true);
    expect(client({ action: 'subscribe', robotIds: ['*'], telemetry: 'raw' })).toBe(true);
    expect(client({ action: 'subscribe', robotIds: ['*'] })).toBe(true);
    expect(client({ action: 'subscribe', robotIds: ['*'], telemetry: '5s' })).toBe(false);
    expect(client({ action: 'unsubscribe', robotIds: ['*'], telemetry: '1s' })).toBe(false);
  });
});
