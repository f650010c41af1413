import { describe, expect, it } from 'vitest';
import { THING_NAME_VARIABLE, THING_POLICY, isAllowed, type ThingPolicyStatement } from '../../schemas/thing-policy.js';

const ME = 'lekiwi-LK0001';
const OTHER = 'lekiwi-LK0002';

describe('thing policy', () => {
  it('names the connected thing in every resource', () => {
    for (const statement of THING_POLICY) {
      for (const resource of statement.resources) expect(resource).toContain(THING_NAME_VARIABLE);
    }
  });

  it('connects only with the own thing name as client id', () => {
    expect(isAllowed('Connect', ME, ME)).toBe(true);
    expect(isAllowed('Connect', ME, OTHER)).toBe(false);
    expect(isAllowed('Connect', ME, `${ME}-x`)).toBe(false);
    expect(isAllowed('Connect', '', '')).toBe(false);
  });

  it('publishes own device data, Basic Ingest telemetry, command replies and jobs only', () => {
    expect(isAllowed('Publish', ME, `dt/heartbeat/${ME}/telemetry`)).toBe(true);
    expect(isAllowed('Publish', ME, `dt/heartbeat/${ME}/events`)).toBe(true);
    // `*` in an IoT policy spans levels.
    expect(isAllowed('Publish', ME, `dt/heartbeat/${ME}/a/b/c`)).toBe(true);
    expect(isAllowed('Publish', ME, `$aws/rules/heartbeat_telemetry/dt/heartbeat/${ME}/telemetry`)).toBe(true);
    expect(isAllowed('Publish', ME, `cmd/heartbeat/${ME}/report-now/reply`)).toBe(true);
    expect(isAllowed('Publish', ME, `$aws/things/${ME}/jobs/start-next`)).toBe(true);

    expect(isAllowed('Publish', ME, `dt/heartbeat/${OTHER}/telemetry`)).toBe(false);
    expect(isAllowed('Publish', ME, `dt/heartbeat/${ME}`)).toBe(false);
    expect(isAllowed('Publish', ME, `$aws/rules/heartbeat_telemetry/dt/heartbeat/${OTHER}/telemetry`)).toBe(false);
    expect(isAllowed('Publish', ME, `$aws/rules/heartbeat_robot_events/dt/heartbeat/${ME}/events`)).toBe(false);
    expect(isAllowed('Publish', ME, `$aws/rules/heartbeat_telemetry/dt/heartbeat/${ME}/telemetry/x`)).toBe(false);
    expect(isAllowed('Publish', ME, `cmd/heartbeat/${ME}/report-now`)).toBe(false);
    expect(isAllowed('Publish', ME, `$aws/events/presence/connected/${ME}`)).toBe(false);
    expect(isAllowed('Publish', ME, `$aws/things/${OTHER}/jobs/start-next`)).toBe(false);
  });

  it('subscribes to own commands and jobs, matching MQTT wildcards literally', () => {
    expect(isAllowed('Subscribe', ME, `cmd/heartbeat/${ME}/report-now`)).toBe(true);
    expect(isAllowed('Subscribe', ME, `cmd/heartbeat/${ME}/#`)).toBe(true);
    expect(isAllowed('Subscribe', ME, `cmd/heartbeat/${ME}/+`)).toBe(true);
    expect(isAllowed('Subscribe', ME, `$aws/things/${ME}/jobs/notify-next`)).toBe(true);

    // `+` is not the thing name: IoT compares the filter text, not the topics it could match.
    expect(isAllowed('Subscribe', ME, 'cmd/heartbeat/+/report-now')).toBe(false);
    expect(isAllowed('Subscribe', ME, 'cmd/heartbeat/#')).toBe(false);
    expect(isAllowed('Subscribe', ME, '#')).toBe(false);
    expect(isAllowed('Subscribe', ME, `cmd/heartbeat/${OTHER}/#`)).toBe(false);
    expect(isAllowed('Subscribe', ME, `dt/heartbeat/${ME}/telemetry`)).toBe(false);
    expect(isAllowed('Subscribe', ME, '$aws/events/presence/+/+')).toBe(false);
  });

  it('receives own commands and jobs only', () => {
    expect(isAllowed('Receive', ME, `cmd/heartbeat/${ME}/report-now`)).toBe(true);
    expect(isAllowed('Receive', ME, `$aws/things/${ME}/jobs/notify-next`)).toBe(true);
    expect(isAllowed('Receive', ME, `cmd/heartbeat/${OTHER}/report-now`)).toBe(false);
    expect(isAllowed('Receive', ME, `dt/heartbeat/${ME}/telemetry`)).toBe(false);
  });

  it('substitutes the thing name literally: regular-expression or policy characters in it are no wildcards', () => {
    expect(isAllowed('Publish', 'a.b', 'dt/heartbeat/a.b/telemetry')).toBe(true);
    expect(isAllowed('Publish', 'a.b', 'dt/heartbeat/aXb/telemetry')).toBe(false);
    expect(isAllowed('Publish', '*', 'dt/heartbeat/anyone/telemetry')).toBe(false);
    expect(isAllowed('Connect', '*', 'anyone')).toBe(false);
    expect(isAllowed('Connect', 'x?', 'xy')).toBe(false);
  });

  it('implements IoT policy wildcards: * any characters including /, ? exactly one', () => {
    const policy: ThingPolicyStatement[] = [
      { sid: 'T', action: 'Publish', resources: [`a/${THING_NAME_VARIABLE}/?x/*`] },
    ];
    expect(isAllowed('Publish', ME, `a/${ME}/1x/`, policy)).toBe(true);
    expect(isAllowed('Publish', ME, `a/${ME}/1x/b/c`, policy)).toBe(true);
    expect(isAllowed('Publish', ME, `a/${ME}/x/b`, policy)).toBe(false);
    expect(isAllowed('Publish', ME, `a/${ME}/12x/b`, policy)).toBe(false);
    expect(isAllowed('Subscribe', ME, `a/${ME}/1x/b`, policy)).toBe(false);
  });
});
