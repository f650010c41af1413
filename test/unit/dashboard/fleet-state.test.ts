import { describe, expect, it } from 'vitest';
import { applyBatch, compareViews, EMPTY_FLEET, robotsBehind, sameView, type FleetChange } from '../../../dashboard/src/live/fleet-state.js';
import { readServerMessage, subscribeMessage } from '../../../dashboard/src/live/messages.js';
import { liveEventView, robotView, telemetryAt } from './fixtures.js';

const T0 = '2026-12-01T10:00:00.000Z';
const T1 = '2026-12-01T10:00:01.000Z';
const T2 = '2026-12-01T10:00:02.000Z';

const robots = (...views: ReturnType<typeof robotView>[]): FleetChange => ({ kind: 'robots', robots: views });

describe('reading the live feed', () => {
  it('subscribes to the whole fleet, with the coalesced telemetry rate unless refused', () => {
    expect(JSON.parse(subscribeMessage(true))).toEqual({ action: 'subscribe', robotIds: ['*'], telemetry: '1s' });
    expect(JSON.parse(subscribeMessage(false))).toEqual({ action: 'subscribe', robotIds: ['*'] });
  });

  it('reads RobotsUpdated, RobotTelemetry, domain events, acks and errors', () => {
    const view = robotView('lekiwi-A1');
    expect(readServerMessage(JSON.stringify({ type: 'RobotsUpdated', at: T0, robots: [view, { nope: 1 }] }))).toEqual({
      kind: 'robots',
      robots: [view],
    });
    const telemetry = telemetryAt(T1);
    expect(readServerMessage(JSON.stringify({ type: 'RobotTelemetry', robotId: 'lekiwi-A1', seq: 4, at: T1, data: telemetry }))).toEqual({
      kind: 'telemetry',
      robotId: 'lekiwi-A1',
      seq: 4,
      telemetry,
    });
    expect(
      readServerMessage(JSON.stringify({ type: 'AlertRaised', robotId: 'lekiwi-A1', seq: 5, at: T1, data: { metric: 'cpuTemperatureC' } })),
    ).toEqual({
      kind: 'event',
      robotId: 'lekiwi-A1',
      event: { seq: 5, eventId: '', type: 'AlertRaised', version: 1, at: T1, recordedAt: T1, data: { metric: 'cpuTemperatureC' } },
    });
    expect(readServerMessage('{"type":"Subscribed","robotIds":["*"]}')).toEqual({ kind: 'subscribed' });
    expect(readServerMessage('{"type":"Error","error":{"code":"INVALID_REQUEST","message":"Invalid body"}}')).toEqual({
      kind: 'error',
      code: 'INVALID_REQUEST',
      message: 'Invalid body',
    });
  });

  it('ignores what it cannot use', () => {
    for (const text of ['nope', '[]', '{"type":"Unsubscribed"}', '{"type":"AlertRaised","robotId":"x","seq":"1","at":"t","data":{}}', '{"type":"RobotTelemetry","robotId":"x","seq":1,"at":"t","data":{}}']) {
      expect(readServerMessage(text).kind).toBe('ignored');
    }
  });
});

describe('the fleet state: a batch of changes', () => {
  it('replaces a view with a newer one: higher lastSeq, or same lastSeq and later telemetry', () => {
    const start = applyBatch(EMPTY_FLEET, [robots(robotView('lekiwi-A1', { lastSeq: 3, telemetry: telemetryAt(T0) }))], 10).state;
    const bySeq = applyBatch(start, [robots(robotView('lekiwi-A1', { lastSeq: 4, status: 'offline', telemetry: telemetryAt(T0) }))], 20);
    expect(bySeq.changed).toBe(true);
    expect(bySeq.state.robots.get('lekiwi-A1')!.status).toBe('offline');
    expect(bySeq.state.updatedAt.get('lekiwi-A1')).toBe(20);
    const byTime = applyBatch(start, [robots(robotView('lekiwi-A1', { lastSeq: 3, telemetry: telemetryAt(T1, { cpuPercent: 99 }) }))], 20);
    expect(byTime.state.robots.get('lekiwi-A1')!.telemetry!.cpuPercent).toBe(99);
  });

  it('ignores a view older than the one held (lower lastSeq, or same lastSeq and earlier telemetry)', () => {
    const held = robotView('lekiwi-A1', { lastSeq: 5, telemetry: telemetryAt(T1) });
    const start = applyBatch(EMPTY_FLEET, [robots(held)], 10).state;
    const result = applyBatch(
      start,
      [robots(robotView('lekiwi-A1', { lastSeq: 4, telemetry: telemetryAt(T2) }), robotView('lekiwi-A1', { lastSeq: 5, telemetry: telemetryAt(T0) }))],
      20,
    );
    expect(result.changed).toBe(false);
    expect(result.state).toEqual(start);
    expect(result.state.robots).toBe(start.robots);
    expect(result.state.robots.get('lekiwi-A1')).toBe(held);
  });

  it('ignores a view that differs only in ages (a list read says nothing new)', () => {
    const held = robotView('lekiwi-A1', { telemetry: telemetryAt(T0, { ageMs: 10 }) });
    const start = applyBatch(EMPTY_FLEET, [robots(held)], 10).state;
    const again = applyBatch(start, [{ kind: 'list', robots: [robotView('lekiwi-A1', { telemetry: telemetryAt(T0, { ageMs: 5000 }) })] }], 20);
    expect(again.changed).toBe(false);
    expect(again.state.updatedAt.get('lekiwi-A1')).toBe(10);
    expect(sameView(held, robotView('lekiwi-A1', { telemetry: telemetryAt(T0, { ageMs: 1 }) }))).toBe(true);
    expect(compareViews(held, robotView('lekiwi-A1', { lastSeq: 2 }))).toBeLessThan(0);
  });

  it('never removes a robot a list read does not have, and never moves one back', () => {
    const newer = robotView('lekiwi-A1', { lastSeq: 9 });
    const start = applyBatch(EMPTY_FLEET, [robots(newer, robotView('lekiwi-NEW'))], 10).state;
    const list = applyBatch(start, [{ kind: 'list', robots: [robotView('lekiwi-A1', { lastSeq: 7 }), robotView('lekiwi-A2')] }], 20).state;
    expect([...list.robots.keys()].sort()).toEqual(['lekiwi-A1', 'lekiwi-A2', 'lekiwi-NEW']);
    expect(list.robots.get('lekiwi-A1')).toBe(newer);
  });

  it('merges RobotTelemetry into the held view, never an earlier sample, never for a robot not held', () => {
    const start = applyBatch(EMPTY_FLEET, [robots(robotView('lekiwi-A1', { lastSeq: 3, telemetry: telemetryAt(T1) }))], 10).state;
    const later = applyBatch(start, [{ kind: 'telemetry', robotId: 'lekiwi-A1', seq: 3, telemetry: telemetryAt(T2, { cpuPercent: 50 }) }], 20);
    expect(later.state.robots.get('lekiwi-A1')!.telemetry).toEqual(telemetryAt(T2, { cpuPercent: 50 }));
    expect(later.telemetry.get('lekiwi-A1')).toBe(later.state.robots.get('lekiwi-A1'));
    const earlier = applyBatch(start, [{ kind: 'telemetry', robotId: 'lekiwi-A1', seq: 3, telemetry: telemetryAt(T0, { cpuPercent: 1 }) }], 20);
    expect(earlier.changed).toBe(false);
    expect(earlier.telemetry.size).toBe(0);
    const unknown = applyBatch(start, [{ kind: 'telemetry', robotId: 'lekiwi-ZZ', seq: 2, telemetry: telemetryAt(T2) }], 20);
    expect(unknown.state.robots.has('lekiwi-ZZ')).toBe(false);
    expect(unknown.behind).toEqual(['lekiwi-ZZ']);
  });

  it('applies a whole batch as one new state: each map copied once, the last word per robot kept', () => {
    const start = applyBatch(EMPTY_FLEET, [robots(robotView('lekiwi-A1'), robotView('lekiwi-A2'))], 10).state;
    const changes: FleetChange[] = [];
    for (let i = 0; i < 100; i += 1) {
      const sampledAt = new Date(Date.parse(T0) + (i + 1) * 1000).toISOString();
      changes.push({ kind: 'telemetry', robotId: i % 2 === 0 ? 'lekiwi-A1' : 'lekiwi-A2', seq: 1, telemetry: telemetryAt(sampledAt, { cpuPercent: i }) });
    }
    const result = applyBatch(start, changes, 30);
    expect(result.changed).toBe(true);
    expect(result.state.robots).not.toBe(start.robots);
    expect(start.robots.get('lekiwi-A1')!.telemetry!.cpuPercent).toBe(10); // the old state is untouched
    expect(result.state.robots.get('lekiwi-A1')!.telemetry!.cpuPercent).toBe(98);
    expect(result.state.robots.get('lekiwi-A2')!.telemetry!.cpuPercent).toBe(99);
    expect([...result.telemetry.keys()].sort()).toEqual(['lekiwi-A1', 'lekiwi-A2']);
    expect(result.telemetry.get('lekiwi-A2')).toBe(result.state.robots.get('lekiwi-A2'));
  });

  it('keeps each robot’s domain events in arrival order and the newest seq heard of', () => {
    const start = applyBatch(EMPTY_FLEET, [robots(robotView('lekiwi-A1', { lastSeq: 3 }))], 10).state;
    const result = applyBatch(
      start,
      [
        { kind: 'event', robotId: 'lekiwi-A1', event: liveEventView(4) },
        { kind: 'event', robotId: 'lekiwi-B1', event: liveEventView(1) },
        { kind: 'event', robotId: 'lekiwi-A1', event: liveEventView(5) },
      ],
      20,
    );
    expect(result.changed).toBe(false); // events alone change no view
    expect(result.events.get('lekiwi-A1')!.map((event) => event.seq)).toEqual([4, 5]);
    expect(result.state.latestSeq.get('lekiwi-A1')).toBe(5);
    expect([...result.behind].sort()).toEqual(['lekiwi-A1', 'lekiwi-B1']);
    expect(robotsBehind(result.state).sort()).toEqual(['lekiwi-A1', 'lekiwi-B1']);
    const caughtUp = applyBatch(result.state, [robots(robotView('lekiwi-A1', { lastSeq: 5 }))], 30);
    expect(caughtUp.behind).toEqual([]);
    expect(robotsBehind(caughtUp.state)).toEqual(['lekiwi-B1']);
  });
});
