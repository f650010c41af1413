import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { AgentEvent } from '../../../schemas/device.js';
import { createJsonLog } from '../../../agent/adapters/json-log.js';
import { teleoperationConfig } from '../../../agent/core/teleoperation-config.js';
import { createTeleoperationScorer, type TeleoperationObservation } from '../../../agent/core/teleoperation-scorer.js';
import {
  startTeleoperationMonitor,
  type TeleoperationClock,
  type TeleoperationReading,
} from '../../../agent/teleoperation-monitor.js';

/**
 * The monitor loop with a scripted probe and fake timers: what it reports, in which order, with which ids and times,
 * and that nothing a probe, scorer or queue does can stop it.
 */

const config = teleoperationConfig();
const WALL_START = Date.parse('2026-11-02T10:00:00.000Z');
const OPERATOR = { localPort: config.commandPort, remoteAddress: '192.168.1.23', remotePort: 50_000 };

/** A remote operator connected from 500 ms, driving (one ~330-byte action per 33 ms tick) from 1000 to 2000 ms. */
function drivingWorld(at: number): Omit<TeleoperationObservation, 'at'> {
  const connected = at >= 500;
  const driving = at >= 1000 && at < 2000;
  return {
    commandBytesIn: driving ? 330 : 0,
    observationBytesOut: 0,
    peers: connected ? [OPERATOR] : [],
    processes: [],
  };
}

function scriptedProbe(world: (at: number) => Omit<TeleoperationObservation, 'at'>) {
  const reads: number[] = [];
  let closed = 0;
  const probe: TeleoperationReading = {
    async read(at) {
      reads.push(at);
      return { at, ...world(at) };
    },
    close() {
      closed += 1;
    },
  };
  return { probe, reads, closed: () => closed };
}

function fakeClock(): TeleoperationClock {
  const origin = Date.now();
  return { monotonicMs: () => Date.now() - origin, wallMs: () => Date.now() };
}

function capturingLog() {
  const lines: { level: string; message: string }[] = [];
  const log = createJsonLog({ level: 'debug', write: (line) => void lines.push(JSON.parse(line)) });
  return { log, lines, messages: (level: string) => lines.filter((l) => l.level === level).map((l) => l.message) };
}

beforeEach(() => {
  vi.useFakeTimers({ now: WALL_START });
});

afterEach(() => {
  vi.useRealTimers();
});

describe('teleoperation monitor', () => {
  it('reports the scorer’s start and stop as schema-valid events with fresh ids and wall-clock times', async () => {
    const { probe } = scriptedProbe(drivingWorld);
    const events: AgentEvent[] = [];
    const { log } = capturingLog();
    const monitor = startTeleoperationMonitor({
      probe,
      scorer: createTeleoperationScorer(),
      clock: fakeClock(),
      log,
      report: async (event) => void events.push(AgentEvent.parse(event)),
    });

    await vi.advanceTimersByTimeAsync(4_000);
    await monitor.stop();

    expect(events.map((event) => event.type)).toEqual(['TeleoperationStarted', 'TeleoperationStopped']);
    const [started, stopped] = events as [AgentEvent, AgentEvent];
    expect(started).toMatchObject({
      type: 'TeleoperationStarted',
      data: { operatorAddress: '192.168.1.23', signals: ['actions', 'command-peer'], score: 0.8 },
    });
    // The second action arrives on the tick at 1056 ms (ticks every 33 ms from 0), the start's reading time.
    const startedAt = Date.parse(started.occurredAt) - WALL_START;
    expect(startedAt).toBeGreaterThanOrEqual(1_000);
    expect(startedAt).toBeLessThanOrEqual(1_100);
    expect(stopped).toMatchObject({ type: 'TeleoperationStopped', data: { reason: 'idle' } });
    const stoppedAt = Date.parse(stopped.occurredAt) - WALL_START;
    // Last action on the tick before 2000 ms; the stop comes once it is older than stopAfterMs (750).
    expect(stoppedAt).toBeGreaterThan(2_700);
    expect(stoppedAt).toBeLessThan(2_850);
    expect(stopped.type === 'TeleoperationStopped' && stopped.data.durationMs).toBe(stoppedAt - startedAt);
    expect(started.eventId).toMatch(/^[0-9a-f-]{36}$/);
    expect(stopped.eventId).not.toBe(started.eventId);
  });

  it('reads every tickMs, one reading at a time even when the probe is slower than a tick', async () => {
    let inside = 0;
    let most = 0;
    const reads: number[] = [];
    const probe: TeleoperationReading = {
      async read(at) {
        inside += 1;
        most = Math.max(most, inside);
        reads.push(at);
        // every third reading takes 100 ms
        if (reads.length % 3 === 0) await new Promise((resolve) => setTimeout(resolve, 100));
        inside -= 1;
        return { at, ...drivingWorld(0) };
      },
    };
    const { log } = capturingLog();
    const monitor = startTeleoperationMonitor({
      probe,
      scorer: createTeleoperationScorer(),
      clock: fakeClock(),
      tickMs: 50,
      idleTickMs: 50,
      log,
      report: async () => undefined,
    });
    await vi.advanceTimersByTimeAsync(1_000);
    // stop() waits for a reading in flight (which may be a slow one)
    const stopped = monitor.stop();
    await vi.advanceTimersByTimeAsync(200);
    await stopped;

    expect(most).toBe(1);
    // Ticks at 0, 50, 100 (slow, until 200), 200, 250, 300 (slow) ... never faster than one per 50 ms.
    for (let i = 1; i < reads.length; i += 1) expect(reads[i]! - reads[i - 1]!).toBeGreaterThanOrEqual(50);
    expect(reads.length).toBeGreaterThanOrEqual(12);
    // a reading still in flight when stop() came is not scored
    expect(monitor.state().ticks).toBeGreaterThanOrEqual(reads.length - 1);
  });

  it('keeps going when the probe fails, logging a repeated failure once and the recovery', async () => {
    let failing = true;
    const probe: TeleoperationReading = {
      async read(at) {
        if (failing) throw new Error('EACCES: /proc/net/tcp');
        return { at, ...drivingWorld(at) };
      },
    };
    const { log, messages } = capturingLog();
    const events: AgentEvent[] = [];
    const monitor = startTeleoperationMonitor({
      probe,
      scorer: createTeleoperationScorer(),
      clock: fakeClock(),
      log,
      report: async (event) => void events.push(event),
    });
    await vi.advanceTimersByTimeAsync(900);
    expect(monitor.state()).toMatchObject({ running: true, ticks: 0 });
    expect(monitor.state().failedTicks).toBeGreaterThan(20);
    expect(messages('warn')).toEqual(['teleoperation reading failed; will retry every tick']);

    failing = false;
    await vi.advanceTimersByTimeAsync(1_000);
    await monitor.stop();
    expect(messages('info')).toContain('teleoperation readings are back');
    expect(events.map((event) => event.type)).toEqual(['TeleoperationStarted', 'TeleoperationStopped']);
    expect(events[1]).toMatchObject({ data: { reason: 'agent-stopped' } });
  });

  it('logs an observation the scorer refuses and goes on', async () => {
    let bad = true;
    const probe: TeleoperationReading = {
      async read(at) {
        return { at, ...drivingWorld(at), commandBytesIn: bad ? -1 : 0 };
      },
    };
    const { log, lines } = capturingLog();
    const monitor = startTeleoperationMonitor({ probe, scorer: createTeleoperationScorer(), clock: fakeClock(), log, report: async () => undefined });
    await vi.advanceTimersByTimeAsync(200);
    bad = false;
    await vi.advanceTimersByTimeAsync(500);
    await monitor.stop();
    const warning = lines.find((line) => line.level === 'warn') as { message: string; error: { message: string } } | undefined;
    expect(warning?.message).toBe('teleoperation scoring failed; will retry every tick');
    expect(warning?.error.message).toMatch(/commandBytesIn must be a non-negative integer/);
    expect(monitor.state().ticks).toBeGreaterThan(3);
  });

  it('hands events to report in order, one at a time, and survives a report that fails', async () => {
    const { probe } = scriptedProbe((at) => {
      // two sessions: 1000–2000 and 4000–5000
      const driving = (at >= 1000 && at < 2000) || (at >= 4000 && at < 5000);
      return { ...drivingWorld(700), commandBytesIn: driving ? 330 : 0 };
    });
    const { log, messages } = capturingLog();
    const handed: string[] = [];
    let calls = 0;
    const monitor = startTeleoperationMonitor({
      probe,
      scorer: createTeleoperationScorer(),
      clock: fakeClock(),
      log,
      report: async (event) => {
        calls += 1;
        // the first report is slow, the second fails
        if (calls === 1) await new Promise((resolve) => setTimeout(resolve, 3_000));
        if (calls === 2) throw new Error('disk full');
        handed.push(event.type);
      },
    });
    await vi.advanceTimersByTimeAsync(7_000);
    await monitor.stop();
    expect(handed).toEqual(['TeleoperationStarted', 'TeleoperationStarted', 'TeleoperationStopped']);
    expect(messages('error')).toEqual(['teleoperation event could not be queued']);
    expect(monitor.state().reported).toBe(3);
  });

  it('stop() ends the loop, reports an open session as agent-stopped, closes the probe, and is idempotent', async () => {
    const { probe, reads, closed } = scriptedProbe((at) => ({ ...drivingWorld(1500), commandBytesIn: at >= 1000 ? 330 : 0 }));
    const events: AgentEvent[] = [];
    const { log } = capturingLog();
    const monitor = startTeleoperationMonitor({
      probe,
      scorer: createTeleoperationScorer(),
      clock: fakeClock(),
      log,
      report: async (event) => void events.push(AgentEvent.parse(event)),
    });
    await vi.advanceTimersByTimeAsync(3_000);
    expect(monitor.state().decision.active).toBe(true);

    await Promise.all([monitor.stop(), monitor.stop()]);
    const readsAtStop = reads.length;
    await vi.advanceTimersByTimeAsync(1_000);

    expect(reads.length).toBe(readsAtStop);
    expect(closed()).toBe(1);
    expect(monitor.state().running).toBe(false);
    expect(events.map((event) => [event.type, 'reason' in event.data ? event.data.reason : null])).toEqual([
      ['TeleoperationStarted', null],
      ['TeleoperationStopped', 'agent-stopped'],
    ]);
    const stopped = events[1]!;
    expect(stopped.type === 'TeleoperationStopped' && stopped.data.durationMs).toBeGreaterThan(1_900);
  });

  it('reads every idleTickMs while nobody is connected, every tickMs from the first connection', async () => {
    const { probe, reads } = scriptedProbe(drivingWorld); // operator connected from 500 ms, driving 1000–2000
    const { log } = capturingLog();
    const monitor = startTeleoperationMonitor({
      probe,
      scorer: createTeleoperationScorer(),
      clock: fakeClock(),
      log,
      report: async () => undefined,
    });
    await vi.advanceTimersByTimeAsync(499);
    expect(monitor.state().pace).toBe('idle');
    expect(reads).toEqual([0, 100, 200, 300, 400]);
    await vi.advanceTimersByTimeAsync(200);
    expect(monitor.state().pace).toBe('fast');
    expect(reads.slice(5, 8)).toEqual([500, 533, 566]);
    await monitor.stop();
  });

  it('refuses a tick shorter than 1 ms, and an idle tick shorter than the tick', () => {
    const { probe } = scriptedProbe(drivingWorld);
    const { log } = capturingLog();
    expect(() =>
      startTeleoperationMonitor({ probe, scorer: createTeleoperationScorer(), log, report: async () => undefined, tickMs: 0 }),
    ).toThrow(/tickMs must be at least 1/);
    expect(() =>
      startTeleoperationMonitor({ probe, scorer: createTeleoperationScorer(), log, report: async () => undefined, tickMs: 50, idleTickMs: 20 }),
    ).toThrow(/idleTickMs must be at least tickMs \(50\)/);
  });
});

describe('teleoperation monitor: its state on every (re)connection (issue 9, item 1)', () => {
  it('states an open session, with its start, after the next reading; and idle once it ended', async () => {
    const { probe } = scriptedProbe(drivingWorld);
    const events: AgentEvent[] = [];
    const { log } = capturingLog();
    const monitor = startTeleoperationMonitor({
      probe,
      scorer: createTeleoperationScorer(),
      clock: fakeClock(),
      log,
      report: async (event) => void events.push(AgentEvent.parse(event)),
    });

    await vi.advanceTimersByTimeAsync(1_500);
    monitor.announce();
    await vi.advanceTimersByTimeAsync(100);
    await vi.advanceTimersByTimeAsync(2_400);
    monitor.announce();
    await vi.advanceTimersByTimeAsync(200);
    await monitor.stop();

    expect(events.map((event) => event.type)).toEqual([
      'TeleoperationStarted',
      'TeleoperationState',
      'TeleoperationStopped',
      'TeleoperationState',
    ]);
    const [started, active, , idle] = events as AgentEvent[];
    expect(active).toMatchObject({
      type: 'TeleoperationState',
      // The start the cloud has: the occurredAt of the session's TeleoperationStarted.
      data: { active: true, since: started!.occurredAt, operatorAddress: '192.168.1.23', signals: ['actions', 'command-peer'] },
    });
    expect(idle).toMatchObject({ type: 'TeleoperationState', data: { active: false } });
    expect(idle!.type === 'TeleoperationState' && idle!.data.since).toBeUndefined();
    expect(new Set(events.map((event) => event.eventId)).size).toBe(4);
  });

  it('a statement asked for before any reading waits for one (it never states idle from no evidence)', async () => {
    let reads = 0;
    const probe: TeleoperationReading = {
      async read(at) {
        reads += 1;
        if (reads < 4) throw new Error('no /proc yet');
        return { at, ...drivingWorld(1_500) };
      },
    };
    const events: AgentEvent[] = [];
    const { log } = capturingLog();
    const monitor = startTeleoperationMonitor({
      probe,
      scorer: createTeleoperationScorer(),
      clock: fakeClock(),
      log,
      report: async (event) => void events.push(AgentEvent.parse(event)),
    });
    monitor.announce();
    monitor.announce();
    await vi.advanceTimersByTimeAsync(60);
    expect(events).toEqual([]);
    await vi.advanceTimersByTimeAsync(400);
    await monitor.stop();
    // Asked twice before it could answer: one statement.
    expect(events.filter((event) => event.type === 'TeleoperationState')).toHaveLength(1);
  });
});
