import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { admit, batchRefusal } from '../../../functions/domain/provisioning.js';
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
const CLAIM = 'claim-b1';
const room = { allowance: 10, claimed: 3, claimCertificateIds: [CLAIM] };
const request = (overrides: Partial<{ serial: string; model: 'lekiwi' | 'xle'; certificateId: string }> = {}) => ({
  serial: 'LK0001',
  certificateId: 'cert-new',
  ...overrides,
});

describe('admit (the pre-provisioning decision)', () => {
  it('admits a registered serial with room in its batch, as <model>-<serial>', () => {
    expect(admit(registered(), request({ model: 'lekiwi' }))).toEqual({
      allow: true,
      thingName: 'lekiwi-LK0001',
      claim: 'first',
    });
  });

  it('refuses an unknown serial', () => {
    expect(admit(undefined, request())).toEqual({ allow: false, reason: 'HOOK_DENIED_UNKNOWN_SERIAL' });
  });

  it('refuses a retired serial, whatever certificate asks and however much room is left', () => {
    for (const certificateId of ['cert-old', 'cert-new']) {
      expect(admit(registered({ state: 'retired', certificateId: 'cert-old' }), request({ certificateId }))).toMatchObject({
        allow: false,
        reason: 'HOOK_DENIED_RETIRED',
      });
    }
  });

  it("refuses, from the batch the claim's transaction saw, a first claim once the batch has admitted its allowance", () => {
    expect(batchRefusal({ ...room, allowance: 10, claimed: 10 }, CLAIM, 'first')).toBe('HOOK_DENIED_BATCH_EXHAUSTED');
    expect(batchRefusal({ ...room, allowance: 1, claimed: 1 }, CLAIM, 'reimage')).toBeUndefined();
  });

  it('refuses a claim certificate the batch does not list, before its count', () => {
    expect(batchRefusal(room, 'claim-other-batch', 'first')).toBe('HOOK_DENIED_WRONG_BATCH');
    expect(batchRefusal({ ...room, claimed: 10 }, 'claim-other-batch', 'first')).toBe('HOOK_DENIED_WRONG_BATCH');
    expect(batchRefusal(room, 'claim-other-batch', 'reimage')).toBe('HOOK_DENIED_WRONG_BATCH');
  });

  it('refuses a robot that says it is another model', () => {
    expect(admit(registered(), request({ model: 'xle' }))).toMatchObject({ allow: false, reason: 'HOOK_DENIED_MODEL_MISMATCH' });
    expect(admit(provisioned(), request({ model: 'xle' }))).toMatchObject({ allow: false, reason: 'HOOK_DENIED_MODEL_MISMATCH' });
  });

  it('admits a re-image under the same thing name, naming the certificate to deactivate, without a new place', () => {
    expect(admit(provisioned('cert-old'), request())).toEqual({
      allow: true,
      thingName: 'lekiwi-LK0001',
      claim: 'reimage',
      supersededCertificateId: 'cert-old',
    });
  });

  it('refuses a new certificate for a serial whose robot is online now: a second robot, not a re-image', () => {
    expect(admit(provisioned('cert-old'), request(), { holderOnline: true })).toMatchObject({
      allow: false,
      reason: 'HOOK_DENIED_ALREADY_CLAIMED',
    });
  });

  it('admits the certificate already recorded again (a retried RegisterThing) with nothing to write', () => {
    expect(admit(provisioned('cert-new'), request(), { holderOnline: true })).toEqual({
      allow: true,
      thingName: 'lekiwi-LK0001',
      claim: 'repeat',
    });
  });

  it("never admits a first claim beyond the allowance, another batch's claim, an unknown or a retired serial (any inputs)", () => {
    const state = fc.constantFrom('registered', 'provisioned', 'retired') as fc.Arbitrary<FactoryRecord['state']>;
    fc.assert(
      fc.property(
        fc.option(state, { nil: undefined }),
        fc.nat(20),
        fc.nat(20),
        fc.boolean(),
        fc.constantFrom('cert-old', 'cert-new'),
        fc.constantFrom(CLAIM, 'claim-other'),
        (recordState, allowance, claimed, holderOnline, certificateId, claimCertificateId) => {
          const record = recordState === undefined ? undefined : registered({ state: recordState, certificateId: recordState === 'registered' ? undefined : 'cert-old' });
          const planned = admit(record, request({ certificateId }), { holderOnline });
          // What the claim's transaction lets through: a write (first, re-image) only when the batch refuses nothing.
          const refusal = planned.allow && planned.claim !== 'repeat' ? batchRefusal({ allowance, claimed, claimCertificateIds: [CLAIM] }, claimCertificateId, planned.claim) : undefined;
          const admitted = planned.allow && refusal === undefined;
          if (!record || record.state === 'retired') expect(planned.allow).toBe(false);
          if (planned.allow) expect(planned.thingName).toBe(thingNameOf('lekiwi', 'LK0001'));
          if (admitted && planned.claim === 'first') expect(claimed).toBeLessThan(allowance);
          if (admitted && planned.claim !== 'repeat') expect(claimCertificateId).toBe(CLAIM);
        },
      ),
    );
  });
});
