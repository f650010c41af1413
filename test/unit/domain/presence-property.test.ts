import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { LifecycleEvent } from '../../../schemas/index.js';
import { decide } from '../../../functions/domain/robot-decider.js';
import { evolve, initialRobotState, type RobotState } from '../../../functions/domain/robot-state.js';
import { connectedEvent, disconnectedEvent } from '../../support/lifecycle-events.js';

const robotId = 'xle-XL0007';
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

interface Session {
  readonly connect: LifecycleEvent & { eventType: 'connected' };
  readonly disconnect: LifecycleEvent | null;
}

/**
 * A robot's real history as IoT Core would number it: sessions one after another; a quick reconnect (or a
 * DUPLICATE_CLIENTID takeover, gap 0) takes the next versionNumber; after more than half an hour offline IoT Core
 * may reset the number to 0 (after about an hour it does).
 */
const history = fc
  .record({
    firstVersion: fc.nat(20),
    start: fc.integer({ min: Date.parse('2026-01-01'), max: Date.parse('2026-12-01') }),
    sessions: fc.array(
      fc.record({
        offlineGap: fc.oneof(
          fc.integer({ min: 0, max: 5_000 }),
          fc.integer({ min: 5_000, max: 29 * MINUTE }),
          fc.integer({ min: 31 * MINUTE, max: 3 * HOUR }),
        ),
        resetIfAllowed: fc.boolean(),
        duration: fc.oneof(fc.integer({ min: 0, max: 10_000 }), fc.integer({ min: 0, max: 3 * 24 * HOUR })),
        clientInitiated: fc.boolean(),
      }),
      { minLength: 1, maxLength: 6 },
    ),
    lastSessionOpen: fc.boolean(),
  })
  .map(({ firstVersion, start, sessions, lastSessionOpen }) => {
    const result: Session[] = [];
    let clock = start;
    let version = firstVersion;
    sessions.forEach((s, index) => {
      if (index > 0) {
        clock += s.offlineGap;
        const mayReset = s.offlineGap >= 31 * MINUTE;
        version = (mayReset && s.resetIfAllowed) || s.offlineGap >= HOUR ? 0 : version + 1;
      }
      const connect = connectedEvent(robotId, version, clock, { sessionIdentifier: `session-${index}` });
      clock += s.duration;
      const open = index === sessions.length - 1 && lastSessionOpen;
      const disconnect = open
        ? null
        : disconnectedEvent(connect, clock, {
            clientInitiatedDisconnect: s.clientInitiated,
            disconnectReason: s.clientInitiated ? 'CLIENT_INITIATED_DISCONNECT' : 'MQTT_KEEP_ALIVE_TIMEOUT',
          });
      result.push({ connect, disconnect });
    });
    return result;
  });

/** Every event delivered at least once, in any order. */
const deliveries = history.chain((sessions) => {
  const events = sessions.flatMap((s) => (s.disconnect ? [s.connect, s.disconnect] : [s.connect]));
  return fc
    .tuple(fc.array(fc.nat(events.length - 1), { maxLength: events.length * 2 }), fc.array(fc.double({ noNaN: true }), {
      minLength: events.length * 3,
      maxLength: events.length * 3,
    }))
    .map(([duplicates, sortKeys]) => {
      const delivered = [...events, ...duplicates.map((i) => events[i]!)];
      const order = delivered.map((event, i) => ({ event, key: sortKeys[i] ?? 0 })).sort((a, b) => a.key - b.key);
      return { sessions, delivered: order.map((o) => o.event) };
    });
});

function apply(events: readonly LifecycleEvent[]): RobotState {
  return events.reduce((state, presence) => {
    const decided = decide(state, { type: 'RecordPresence', presence }, { known: true });
    return decided.reduce(evolve, state);
  }, initialRobotState(robotId));
}

describe('presence ordering (property)', () => {
  it('ends in the status the last real session implies, whatever the duplication and order', () => {
    fc.assert(
      fc.property(deliveries, ({ sessions, delivered }) => {
        const last = sessions[sessions.length - 1]!;
        const state = apply(delivered);
        expect(state.presence.status).toBe(last.disconnect ? 'offline' : 'online');
        expect(state.presence.last?.sessionIdentifier).toBe(last.connect.sessionIdentifier);
      }),
      { numRuns: 2_000 },
    );
  });

  it('records each session’s connect and disconnect at most once', () => {
    fc.assert(
      fc.property(deliveries, ({ delivered }) => {
        const seen = new Set<string>();
        delivered.reduce((state, presence) => {
          const decided = decide(state, { type: 'RecordPresence', presence }, { known: true });
          for (const event of decided) {
            expect(seen.has(event.eventId)).toBe(false);
            seen.add(event.eventId);
          }
          return decided.reduce(evolve, state);
        }, initialRobotState(robotId));
      }),
      { numRuns: 500 },
    );
  });
});
