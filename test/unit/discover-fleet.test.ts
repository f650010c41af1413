import { describe, expect, it } from 'vitest';
import { discoverFleet, DISCOVER_CONCURRENCY } from '../../functions/app/discover-fleet.js';
import { InMemoryFleetQueries, RecordingCommandChannel } from '../support/fleet-queries-fake.js';

/** "Report now" for the fleet, on in-memory ports: who is asked, with what, how many at once, and what a failure does. */

const REQUEST_ID = '6f1f2c4e-7a55-4c0b-9d0e-3b2f7a9c1d20';

function fleetOf(online: number, offline: number) {
  return [
    ...Array.from({ length: online }, (_, i) => ({ robotId: `lekiwi-ON${String(i).padStart(5, '0')}`, online: true })),
    ...Array.from({ length: offline }, (_, i) => ({ robotId: `xle-OFF${String(i).padStart(4, '0')}`, online: false })),
  ];
}

describe('discoverFleet', () => {
  it('asks every online robot, and only those, with one request id on report-now, across read-model pages', async () => {
    // Given 1,203 robots online (three pages) and 40 offline
    const queries = new InMemoryFleetQueries(fleetOf(1_203, 40));
    const channel = new RecordingCommandChannel();
    const logged: string[] = [];

    // When
    const result = await discoverFleet({ queries, robotCommands: channel, newRequestId: () => REQUEST_ID, log: (m) => logged.push(m) });

    // Then
    expect(result).toEqual({ requestId: REQUEST_ID, asked: 1_203, failed: 0 });
    expect(new Set(channel.sent.map((c) => c.robotId)).size).toBe(1_203);
    expect(channel.sent.every((c) => c.robotId.startsWith('lekiwi-ON'))).toBe(true);
    expect(channel.sent.every((c) => c.request === 'report-now')).toBe(true);
    expect(channel.sent.every((c) => JSON.stringify(c.payload) === JSON.stringify({ requestId: REQUEST_ID }))).toBe(true);
    expect(queries.queries.every((q) => q.status === 'online')).toBe(true);
    expect(queries.queries).toHaveLength(3);
    expect(logged).toEqual([]);
  });

  it('publishes with bounded concurrency', async () => {
    const channel = new RecordingCommandChannel();
    await discoverFleet({ queries: new InMemoryFleetQueries(fleetOf(200, 0)), robotCommands: channel, newRequestId: () => REQUEST_ID, log: () => {} });
    expect(channel.maxInFlight).toBe(DISCOVER_CONCURRENCY);

    const narrow = new RecordingCommandChannel();
    await discoverFleet(
      { queries: new InMemoryFleetQueries(fleetOf(50, 0)), robotCommands: narrow, newRequestId: () => REQUEST_ID, log: () => {} },
      { concurrency: 3 },
    );
    expect(narrow.maxInFlight).toBe(3);
    expect(narrow.sent).toHaveLength(50);
  });

  it('counts and logs a robot whose command failed, and still asks the others', async () => {
    // Given a broker that refuses every third robot's publish
    const failing = (robotId: string) => Number(robotId.slice(-5)) % 3 === 0;
    const channel = new RecordingCommandChannel(failing);
    const logged: { message: string; details: Record<string, unknown> }[] = [];

    // When 30 robots are online
    const result = await discoverFleet({
      queries: new InMemoryFleetQueries(fleetOf(30, 2)),
      robotCommands: channel,
      newRequestId: () => REQUEST_ID,
      log: (message, details) => logged.push({ message, details }),
    });

    // Then 10 failed, 20 were asked, each failure named (up to ten) and a summary logged
    expect(result).toEqual({ requestId: REQUEST_ID, asked: 20, failed: 10 });
    expect(channel.sent).toHaveLength(20);
    const perRobot = logged.filter((entry) => entry.message === 'report-now could not be sent to a robot');
    expect(perRobot).toHaveLength(10);
    expect(perRobot[0]!.details).toMatchObject({ requestId: REQUEST_ID, robotId: 'lekiwi-ON00000', error: expect.any(Error) });
    expect(logged.at(-1)).toEqual({ message: 'discover: some robots were not asked', details: { requestId: REQUEST_ID, failed: 10, asked: 20 } });
  });

  it('logs only the first ten failures when the broker refuses everyone', async () => {
    const logged: string[] = [];
    const result = await discoverFleet({
      queries: new InMemoryFleetQueries(fleetOf(100, 0)),
      robotCommands: new RecordingCommandChannel(() => true),
      newRequestId: () => REQUEST_ID,
      log: (message) => logged.push(message),
    });
    expect(result).toEqual({ requestId: REQUEST_ID, asked: 0, failed: 100 });
    expect(logged).toHaveLength(11);
  });

  it('asks nobody, and says so, when no robot is online', async () => {
    const channel = new RecordingCommandChannel();
    const result = await discoverFleet({ queries: new InMemoryFleetQueries(fleetOf(0, 5)), robotCommands: channel, newRequestId: () => REQUEST_ID, log: () => {} });
    expect(result).toEqual({ requestId: REQUEST_ID, asked: 0, failed: 0 });
    expect(channel.sent).toEqual([]);
  });
});
