import { describe, expect, it } from 'vitest';
import { decide, provisionedEventId, type RobotCommand } from '../../../functions/domain/robot-decider.js';
import { lifecycleOf } from '../../../functions/domain/lifecycle.js';
import { evolve, fold, initialRobotState, type RobotState } from '../../../functions/domain/robot-state.js';
import { AgentEvent, DomainEvent } from '../../../schemas/index.js';
import { connectedEvent, disconnectedEvent } from '../../support/lifecycle-events.js';

const robotId = 'lekiwi-LK0042';
const T0 = Date.parse('2026-12-01T10:00:00.000Z');
const at = (s: number) => new Date(T0 + s * 1000).toISOString();
const provision = (certificateId: string, claim: 'first' | 'reimage', s = 0, superseded?: string): RobotCommand => ({
  type: 'RecordProvisioning',
  at: at(s),
  serial: 'LK0042',
  batch: 'B1',
  certificateId,
  claim,
  supersededCertificateId: superseded,
});
const apply = (state: RobotState, command: RobotCommand) => fold(state, decide(state, command, { known: true }));

describe('provisioning in the robot decider and its state', () => {
  it('records RobotProvisioned once per certificate, with an id that names it', () => {
    const state = initialRobotState(robotId);
    const events = decide(state, provision('cert-a', 'first'), { known: false });
    expect(events).toEqual([
      {
        eventId: provisionedEventId('cert-a'),
        robotId,
        at: at(0),
        version: 1,
        type: 'RobotProvisioned',
        data: { serial: 'LK0042', model: 'lekiwi', batch: 'B1', certificateId: 'cert-a', claim: 'first' },
      },
    ]);
    expect(DomainEvent.parse(events[0])).toEqual(events[0]);
    const after = fold(state, events);
    expect(decide(after, provision('cert-a', 'first', 5), { known: true })).toEqual([]);
  });

  it('goes provisioning → ready when the robot connects, and provisioning again after a re-image while offline', () => {
    let state = apply(initialRobotState(robotId), provision('cert-a', 'first'));
    expect(state.registered).toBe(true);
    expect(lifecycleOf(state)).toBe('provisioning');

    const connect = connectedEvent(robotId, 1, T0 + 2000);
    state = apply(state, { type: 'RecordPresence', presence: connect });
    expect(state.provisioning).toMatchObject({ certificateId: 'cert-a', connected: true, claims: 1 });
    expect(lifecycleOf(state)).toBe('ready');

    state = apply(state, { type: 'RecordPresence', presence: disconnectedEvent(connect, T0 + 3000) });
    expect(lifecycleOf(state)).toBe('offline');
    state = apply(state, provision('cert-b', 'reimage', 4, 'cert-a'));
    expect(state.provisioning).toMatchObject({ certificateId: 'cert-b', connected: false, claims: 2 });
    expect(lifecycleOf(state)).toBe('provisioning');
  });

  it("records the agent's ProvisioningFailed as it came, and counts them", () => {
    const report = AgentEvent.parse({
      eventId: 'prov-fail-0001',
      occurredAt: at(1),
      type: 'ProvisioningFailed',
      data: { serial: 'LK0042', reason: 'HOOK_DENIED_ALREADY_CLAIMED', detail: 'AccessDenied', step: 'certificate-issued', attempt: 1 },
    });
    const state = initialRobotState(robotId);
    const events = decide(state, { type: 'RecordAgentEvent', event: report }, { known: true });
    expect(events).toEqual([expect.objectContaining({ type: 'ProvisioningFailed', eventId: 'prov-fail-0001', at: at(1), data: report.data })]);
    const after = evolve(evolve(state, events[0]!), { ...events[0]!, eventId: 'prov-fail-0002', at: at(2) });
    expect(after.provisioningFailures).toEqual({ count: 2, last: { reason: 'HOOK_DENIED_ALREADY_CLAIMED', detail: 'AccessDenied', at: at(2) } });
  });

  it('takes a reason a newer agent names, and refuses one that is not a reason name', () => {
    const base = { eventId: 'prov-fail-0003', occurredAt: at(1), type: 'ProvisioningFailed' as const };
    expect(AgentEvent.safeParse({ ...base, data: { serial: 'LK0042', reason: 'SOMETHING_NEW' } }).success).toBe(true);
    expect(AgentEvent.safeParse({ ...base, data: { serial: 'LK0042', reason: 'lower case' } }).success).toBe(false);
    expect(AgentEvent.safeParse({ ...base, data: { serial: 'LK0042', reason: 'CLOCK_SKEW', privateKey: 'x' } }).success).toBe(false);
  });
});
