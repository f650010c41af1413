import { describe, expect, it } from 'vitest';
import type { DomainEvent } from '../../schemas/index.js';
import { expireOfflineTeleoperation, TeleoperationOfflineTimeoutEnv, type OfflineTeleoperations } from '../../functions/app/expire-offline-teleoperation.js';
import { decide } from '../../functions/domain/robot-decider.js';
import { fold, initialRobotState } from '../../functions/domain/robot-state.js';
import { teleoperationExpiryIntervalMs } from '../../local/scheduled-function.js';
import { InMemoryEventLog } from '../support/in-memory-event-log.js';
import { connectedEvent, disconnectedEvent } from '../support/lifecycle-events.js';

/**
 * The offline-timeout sweep (issue 9, item 1): candidates come from the read model, the decision from each robot's
 * head in the event log, through the command path.
 */
const T0 = Date.parse('2026-11-22T10:00:00.000Z');
const TIMEOUT = 120_000;
const iso = (ms: number) => new Date(ms).toISOString();

async function appendHistory(log: InMemoryEventLog, robotId: string, steps: ((state: ReturnType<typeof initialRobotState>) => DomainEvent[])[]) {
  let state = initialRobotState(robotId);
  for (const step of steps) {
    const head = await log.readHead(robotId);
    const events = step(state);
    const next = fold(state, events);
    const outcome = await log.append({
      robotId,
      expectedRevision: head?.revision ?? null,
      expectedLastSeq: head?.lastSeq ?? 0,
      events,
      state: next,
      previousTelemetry: null,
      recordedAt: iso(T0),
    });
    expect(outcome.status).toBe('appended');
    state = next;
  }
}

/** Connected, driven from T0 + 1 s, link dropped at `droppedAt`. */
async function drivenThenDropped(log: InMemoryEventLog, robotId: string, droppedAt: number) {
  const connect = connectedEvent(robotId, 1, T0);
  await appendHistory(log, robotId, [
    (state) => decide(state, { type: 'RecordPresence', presence: connect }, { known: true }),
    (state) =>
      decide(
        state,
        { type: 'RecordAgentEvent', event: { eventId: `start-${robotId}`, occurredAt: iso(T0 + 1000), type: 'TeleoperationStarted', data: { signals: ['actions'] } } },
        { known: true },
      ),
    (state) =>
      decide(state, { type: 'RecordPresence', presence: disconnectedEvent(connect, droppedAt, { clientInitiatedDisconnect: false, disconnectReason: 'CONNECTION_LOST' }) }, { known: true }),
  ]);
}

const finderOf = (robotIds: string[]): OfflineTeleoperations & { asked: Date[] } => {
  const asked: Date[] = [];
  return {
    asked,
    async robotsOfflineWhileTeleoperated(offlineBefore) {
      asked.push(offlineBefore);
      return robotIds;
    },
  };
};

describe('expireOfflineTeleoperation', () => {
  it('closes the sessions of robots offline past the timeout as robot-offline, decided on the head, once', async () => {
    const log = new InMemoryEventLog();
    await drivenThenDropped(log, 'lekiwi-OLD001', T0 + 10_000);
    // The read model is behind: this one dropped only a minute ago by its head.
    await drivenThenDropped(log, 'lekiwi-NEW001', T0 + 10_000 + TIMEOUT - 60_000);
    const finder = finderOf(['lekiwi-OLD001', 'lekiwi-NEW001', 'lekiwi-GONE01']);
    const now = () => new Date(T0 + 10_000 + TIMEOUT);

    const result = await expireOfflineTeleoperation({ finder, eventLog: log, now, timeoutMs: TIMEOUT });
    expect(finder.asked).toEqual([new Date(T0 + 10_000)]);
    expect(result).toEqual({ candidates: 3, closed: ['lekiwi-OLD001'], failed: [] });
    const { events } = await log.readEvents('lekiwi-OLD001');
    expect(events.at(-1)?.event).toMatchObject({ type: 'TeleoperationStopped', at: now().toISOString(), data: { reason: 'robot-offline', durationMs: 9_000 } });
    expect((await log.readHead('lekiwi-OLD001'))?.state.teleoperation.active).toBe(false);
    expect((await log.readHead('lekiwi-NEW001'))?.state.teleoperation).toMatchObject({ active: true, confirmed: false });

    // The next run (or an overlapping one) appends nothing more.
    const again = await expireOfflineTeleoperation({ finder, eventLog: log, now, timeoutMs: TIMEOUT });
    expect(again.closed).toEqual([]);
    expect((await log.readEvents('lekiwi-OLD001')).events).toHaveLength(events.length);
  });

  it('goes on past a robot it cannot decide, and says which and why', async () => {
    const log = new InMemoryEventLog();
    await drivenThenDropped(log, 'lekiwi-OLD002', T0);
    const broken = Object.assign(Object.create(log) as InMemoryEventLog, {
      readHead: async (robotId: string) => {
        if (robotId === 'lekiwi-BAD001') throw new Error('throttled');
        return log.readHead(robotId);
      },
    });
    const result = await expireOfflineTeleoperation({
      finder: finderOf(['lekiwi-BAD001', 'lekiwi-OLD002']),
      eventLog: broken,
      now: () => new Date(T0 + 2 * TIMEOUT),
      timeoutMs: TIMEOUT,
    });
    expect(result).toEqual({ candidates: 2, closed: ['lekiwi-OLD002'], failed: [{ robotId: 'lekiwi-BAD001', error: 'throttled' }] });
  });

  it('reads its timeout from TELEOPERATION_OFFLINE_TIMEOUT_SECONDS (default 120 s) and refuses a bad one by name', () => {
    expect(TeleoperationOfflineTimeoutEnv.parse({}).TELEOPERATION_OFFLINE_TIMEOUT_SECONDS).toBe(120);
    expect(TeleoperationOfflineTimeoutEnv.parse({ TELEOPERATION_OFFLINE_TIMEOUT_SECONDS: '30' }).TELEOPERATION_OFFLINE_TIMEOUT_SECONDS).toBe(30);
    const bad = TeleoperationOfflineTimeoutEnv.safeParse({ TELEOPERATION_OFFLINE_TIMEOUT_SECONDS: '-5' });
    expect(bad.success).toBe(false);
    expect(bad.error?.issues[0]?.path).toEqual(['TELEOPERATION_OFFLINE_TIMEOUT_SECONDS']);
    // Locally the sweep runs every minute as in AWS, or every quarter of a shorter timeout.
    expect(teleoperationExpiryIntervalMs({})).toBe(30_000);
    expect(teleoperationExpiryIntervalMs({ TELEOPERATION_OFFLINE_TIMEOUT_SECONDS: '600' })).toBe(60_000);
    expect(teleoperationExpiryIntervalMs({ TELEOPERATION_OFFLINE_TIMEOUT_SECONDS: '8' })).toBe(2_000);
  });
});
