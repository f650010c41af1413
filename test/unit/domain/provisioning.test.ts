import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { admit } from '../../../functions/domain/provisioning.js';
import { thingNameOf, type FactoryRecord } from '../../../schemas/index.js';

const T0 = '2026-12-01T10:00:00.000Z';
const registered = (overrides: Partial<FactoryRecord> = {}): FactoryRecord => ({
  serial: 'LK0001',
  model: 'lekiwi',
  batchId: 'B1',
  state: 'registered',
  thingName: 'lekiwi-LK0001',
  supersededCertificateIds: [],
  claims: 0,
  registeredAt: T0,
  updatedAt: T0,
  ...overrides,
});
const provisioned = (certificateId = 'cert-old') =>
  registered({ state: 'provisioned', certificateId, claims: 1, provisionedAt: T0 });
const room = { allowance: 10, claimed: 3 };
const request = (overrides: Partial<{ serial: string; model: 'lekiwi' | 'xle'; certificateId: string }> = {}) => ({
  serial: 'LK0001',
  certificateId: 'cert-new',
  ...overrides,
});

describe('admit (the pre-provisioning decision)', () => {
  it('admits a registered serial with room in its batch, as <model>-<serial>', () => {
    expect(admit(registered(), room, request({ model: 'lekiwi' }))).toEqual({
      allow: true,
      thingName: 'lekiwi-LK0001',
      claim: 'first',
    });
  });

  it('refuses an unknown serial', () => {
    expect(admit(undefined, undefined, request())).toEqual({ allow: false, reason: 'HOOK_DENIED_UNKNOWN_SERIAL' });
  });

  it('refuses a retired serial, whatever certificate asks and however much room is left', () => {
    for (const certificateId of ['cert-old', 'cert-new']) {
      expect(admit(registered({ state: 'retired', certificateId: 'cert-old' }), room, request({ certificateId }))).toMatchObject({
        allow: false,
        reason: 'HOOK_DENIED_RETIRED',
      });
    }
  });

  it('refuses a first claim once the batch has admitted its allowance', () => {
    expect(admit(registered(), { allowance: 10, claimed: 10 }, request())).toMatchObject({
      allow: false,
      reason: 'HOOK_DENIED_BATCH_EXHAUSTED',
      thingName: 'lekiwi-LK0001',
    });
  });

  it('refuses a robot that says it is another model', () => {
    expect(admit(registered(), room, request({ model: 'xle' }))).toMatchObject({ allow: false, reason: 'HOOK_DENIED_MODEL_MISMATCH' });
    expect(admit(provisioned(), room, request({ model: 'xle' }))).toMatchObject({ allow: false, reason: 'HOOK_DENIED_MODEL_MISMATCH' });
  });

  it('admits a re-image under the same thing name, naming the certificate to deactivate, without a new place', () => {
    expect(admit(provisioned('cert-old'), { allowance: 1, claimed: 1 }, request())).toEqual({
      allow: true,
      thingName: 'lekiwi-LK0001',
      claim: 'reimage',
      supersededCertificateId: 'cert-old',
    });
  });

  it('refuses a new certificate for a serial whose robot is online now: a second robot, not a re-image', () => {
    expect(admit(provisioned('cert-old'), room, request(), { holderOnline: true })).toMatchObject({
      allow: false,
      reason: 'HOOK_DENIED_ALREADY_CLAIMED',
    });
  });

  it('admits the certificate already recorded again (a retried RegisterThing) with nothing to write', () => {
    expect(admit(provisioned('cert-new'), { allowance: 1, claimed: 1 }, request(), { holderOnline: true })).toEqual({
      allow: true,
      thingName: 'lekiwi-LK0001',
      claim: 'repeat',
    });
  });

  it('never admits a first claim beyond the allowance, an unknown or a retired serial (any inputs)', () => {
    const state = fc.constantFrom('registered', 'provisioned', 'retired') as fc.Arbitrary<FactoryRecord['state']>;
    fc.assert(
      fc.property(
        fc.option(state, { nil: undefined }),
        fc.nat(20),
        fc.nat(20),
        fc.boolean(),
        fc.constantFrom('cert-old', 'cert-new'),
        (recordState, allowance, claimed, holderOnline, certificateId) => {
          const record = recordState === undefined ? undefined : registered({ state: recordState, certificateId: recordState === 'registered' ? undefined : 'cert-old' });
          const decision = admit(record, { allowance, claimed }, request({ certificateId }), { holderOnline });
          if (!record || record.state === 'retired') expect(decision.allow).toBe(false);
          if (decision.allow) {
            expect(decision.thingName).toBe(thingNameOf('lekiwi', 'LK0001'));
            if (decision.claim === 'first') expect(claimed).toBeLessThan(allowance);
          }
        },
      ),
    );
  });
});
