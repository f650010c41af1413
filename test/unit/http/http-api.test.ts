import { afterEach, describe, expect, it, vi } from 'vitest';
import type { FleetQueries } from '../../../functions/app/http/fleet-queries.js';
import { createHttpApi } from '../../../functions/app/http/http-api.js';
import { ROUTE_KEYS } from '../../../functions/app/http/routes.js';
import type { AppendOutcome, AppendRequest, RobotCommandChannel } from '../../../functions/app/ports.js';
import { fold, initialRobotState } from '../../../functions/domain/robot-state.js';
import { logger, metrics } from '../../../functions/platform/observability.js';
import { toHttpApiEvent, type PlainHttpRequest } from '../../../local/http-api-event.js';
import { InMemoryEventLog } from '../../support/in-memory-event-log.js';
import { robotHistory } from '../../support/read-model-seed.js';

/**
 * The HTTP layer with in-memory ports: the answers that need a failing or contended dependency (500, 503) and the
 * exact command result under a pinned clock and id source.
 */

const NOW = new Date('2026-11-22T10:00:00.000Z');
const ENGINEER = { username: 'erin', 'cognito:groups': '[engineer]' };

/** A read side that must not be reached: every method fails like a database that went away. */
const unreachableDatabase: FleetQueries = {
  listRobots: () => Promise.reject(new Error('connect ECONNREFUSED 10.0.3.7:5432 (user heartbeat, password s3cret)')),
  getRobot: () => Promise.reject(new Error('connect ECONNREFUSED 10.0.3.7:5432')),
  listEvents: () => Promise.reject(new Error('connect ECONNREFUSED 10.0.3.7:5432')),
  metrics: () => Promise.reject(new Error('connect ECONNREFUSED 10.0.3.7:5432')),
  telemetryHistory: () => Promise.reject(new Error('connect ECONNREFUSED 10.0.3.7:5432')),
};

/** These tests send no command to a robot. */
const noRobotCommands: RobotCommandChannel = { send: () => Promise.reject(new Error('no robot commands in this test')) };

/** A log where another writer always got there first. */
class ContendedEventLog extends InMemoryEventLog {
  override async append(_request: AppendRequest): Promise<AppendOutcome> {
    return { status: 'conflict' };
  }
}

/** Seeds through the base class's append, so a log that refuses every append (ContendedEventLog) still gets its robot. */
async function robotIn(log: InMemoryEventLog, robotId: string): Promise<void> {
  const events = robotHistory(robotId);
  const outcome = await InMemoryEventLog.prototype.append.call(log, {
    robotId,
    expectedRevision: null,
    expectedLastSeq: 0,
    events,
    state: fold(initialRobotState(robotId), events),
    recordedAt: NOW.toISOString(),
    previousTelemetry: null,
  });
  expect(outcome.status).toBe('appended');
}

function request(plain: PlainHttpRequest, claims: Record<string, string> = ENGINEER) {
  return toHttpApiEvent(plain, { routeKeys: ROUTE_KEYS, claims });
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('the HTTP API with in-memory ports', () => {
  it('answers a command with the robot from the head, the caller, the clock and the id it was given', async () => {
    // Given
    const eventLog = new InMemoryEventLog();
    await robotIn(eventLog, 'lekiwi-LK0042');
    const api = createHttpApi({ queries: unreachableDatabase, eventLog, now: () => NOW, robotCommands: noRobotCommands, newEventId: () => 'evt-00000001' });

    // When
    const result = await api(
      request({ method: 'POST', path: '/api/v2/robots/lekiwi-LK0042/fail', body: '{"reason":"arm calibration lost"}' }),
    );

    // Then
    expect(result.statusCode).toBe(200);
    expect(JSON.parse(result.body)).toMatchObject({
      robot: {
        robotId: 'lekiwi-LK0042',
        lifecycle: 'failed',
        failure: { reason: 'arm calibration lost', by: 'erin', at: NOW.toISOString() },
        lastSeq: 3,
      },
      appended: [{ seq: 3, type: 'RobotMarkedFailed', eventId: 'evt-00000001' }],
    });
  });

  it('answers 503 with Retry-After when the robot keeps changing under the command', async () => {
    // Given
    const eventLog = new ContendedEventLog();
    await robotIn(eventLog, 'xle-XL0042');
    const api = createHttpApi({ queries: unreachableDatabase, eventLog, now: () => NOW, robotCommands: noRobotCommands, newEventId: () => 'evt-00000002' });

    // When
    const result = await api(request({ method: 'POST', path: '/api/v2/robots/xle-XL0042/fail', body: '{"reason":"x"}' }));

    // Then
    expect(result.statusCode).toBe(503);
    expect(result.headers?.['retry-after']).toBe('1');
    expect(JSON.parse(result.body).error.code).toBe('ROBOT_BUSY');
  });

  it('answers 500 with a generic message, logs the error and counts it, and shows nothing internal', async () => {
    // Given
    const logged = vi.spyOn(logger, 'error');
    const counted = vi.spyOn(metrics, 'addMetric');
    const api = createHttpApi({ queries: unreachableDatabase, eventLog: new InMemoryEventLog(), now: () => NOW, robotCommands: noRobotCommands, newEventId: () => 'x' });

    // When
    const result = await api(request({ method: 'GET', path: '/api/v2/robots' }, { username: 'olga', 'cognito:groups': '[operator]' }));

    // Then
    expect(result.statusCode).toBe(500);
    expect(result.headers?.['content-type']).toBe('application/json');
    expect(JSON.parse(result.body)).toEqual({
      error: { code: 'INTERNAL_ERROR', message: expect.any(String), details: null },
    });
    expect(result.body).not.toMatch(/ECONNREFUSED|10\.0\.3\.7|s3cret|\.ts:\d+/);
    expect(logged).toHaveBeenCalledWith('HTTP API request failed', expect.objectContaining({ error: expect.any(Error) }));
    expect(counted).toHaveBeenCalledWith('HttpApiServerError', 'Count', 1);
  });

  it('reads the body when the gateway sends it base64-encoded', async () => {
    const eventLog = new InMemoryEventLog();
    await robotIn(eventLog, 'lekiwi-LK0043');
    const api = createHttpApi({ queries: unreachableDatabase, eventLog, now: () => NOW, robotCommands: noRobotCommands, newEventId: () => 'evt-00000003' });
    const result = await api(
      request({ method: 'POST', path: '/api/v2/robots/lekiwi-LK0043/fail', body: new TextEncoder().encode('{"reason":"bytes"}') }),
    );
    expect(result.statusCode).toBe(200);
    expect(JSON.parse(result.body).robot.failure.reason).toBe('bytes');
  });

  it('answers 401 to claims that name nobody', async () => {
    const api = createHttpApi({ queries: unreachableDatabase, eventLog: new InMemoryEventLog(), now: () => NOW, robotCommands: noRobotCommands, newEventId: () => 'x' });
    const result = await api(request({ method: 'GET', path: '/api/v2/metrics' }, { 'cognito:groups': '[admin]' }));
    expect(result.statusCode).toBe(401);
    expect(result.headers?.['www-authenticate']).toBe('Bearer');
  });
});
