import { describe, expect, it } from 'vitest';
import { simulatedThingName } from '../../local/simulated-fleet.js';
import { parseSimulatedInstallFaults, simulatedInjection, SimulatedInstallFaultsError } from '../../local/simulated-install-faults.js';
import type { AgentEvent } from '../../schemas/device.js';

const FLEET = Array.from({ length: 20 }, (_, i) => simulatedThingName(i));
const DEPLOYMENT = 'dep-01JD0000000000000000000000';

const started = (version: string, kind: 'deploy' | 'rollback' = 'deploy'): AgentEvent => ({
  eventId: `e-${version}-${kind}`,
  occurredAt: '2026-12-01T00:00:00.000Z',
  type: 'UpdateStarted',
  data: { deploymentId: DEPLOYMENT, jobId: `${DEPLOYMENT}-b0`, version, kind, fromVersion: null, filesToFetch: 0, bytesToFetch: 0 },
});

describe('HEARTBEAT_SIM_INSTALL_FAIL', () => {
  it('names robots, optionally only for some versions', () => {
    expect(parseSimulatedInstallFaults(undefined, FLEET)).toBeUndefined();
    expect(parseSimulatedInstallFaults('xle-SIM003, lekiwi-SIM004', FLEET)).toEqual({ robots: new Set(['xle-SIM003', 'lekiwi-SIM004']), versions: undefined });
    expect(parseSimulatedInstallFaults('xle-SIM003@3.0.0,3.1.0', FLEET)?.versions).toEqual(new Set(['3.0.0', '3.1.0']));
  });

  it('a share is spread evenly over the fleet: 20 % of 20 is every 5th robot, 25 % every 4th', () => {
    expect([...parseSimulatedInstallFaults('20%', FLEET)!.robots]).toEqual([FLEET[4], FLEET[9], FLEET[14], FLEET[19]]);
    expect(parseSimulatedInstallFaults('25%', FLEET)!.robots.size).toBe(5);
    expect(parseSimulatedInstallFaults('20%', Array.from({ length: 100 }, (_, i) => simulatedThingName(i)))!.robots.size).toBe(20);
    expect(parseSimulatedInstallFaults('0%', FLEET)!.robots.size).toBe(0);
  });

  it('refuses robots not in the fleet, an empty list, a share above 100 %, no version after @', () => {
    expect(() => parseSimulatedInstallFaults('lekiwi-SIM999', FLEET)).toThrow(SimulatedInstallFaultsError);
    expect(() => parseSimulatedInstallFaults(',', FLEET)).toThrow(/name robots/);
    expect(() => parseSimulatedInstallFaults('120%', FLEET)).toThrow(/0%–100%/);
    expect(() => parseSimulatedInstallFaults('xle-SIM003@', FLEET)).toThrow(/version/);
  });

  it('fires after the restart step only during a deployment of a named version, never in a rollback', () => {
    const faults = parseSimulatedInstallFaults('xle-SIM003@3.0.0', FLEET);
    expect(simulatedInjection('lekiwi-SIM001', faults).injectFailure).toBeUndefined();
    const injection = simulatedInjection('xle-SIM003', faults);
    const step = () => injection.injectFailure?.step;
    expect(injection.injectFailure?.reason).toBe('INJECTED');
    expect(step()).not.toBe('restarted');
    injection.observe(started('3.0.0'));
    expect(step()).toBe('restarted');
    injection.observe(started('2.0.0', 'rollback'));
    expect(step()).not.toBe('restarted');
    injection.observe(started('2.0.0'));
    expect(step()).not.toBe('restarted');
  });
});
