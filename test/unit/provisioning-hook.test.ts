import { describe, expect, it } from 'vitest';
import { admit, batchRefusal } from '../../functions/domain/provisioning.js';
import type { ClaimCommit, ClaimCommitOutcome, ProvisioningClaims } from '../../functions/app/provisioning/factory-registry.js';
import type { RobotHead } from '../../functions/app/ports.js';
import {
  MAX_CLAIM_ATTEMPTS,
  preProvisioningHook,
  ProvisioningContendedError,
} from '../../functions/app/provisioning/pre-provisioning-hook.js';
import {
  SerialListError,
  serialsFromCsv,
  serialsFromList,
  validateSerials,
} from '../../functions/app/provisioning/register-serials.js';
import type { FactoryBatch, FactoryRecord } from '../../schemas/index.js';
import { hookInput } from '../support/factory.js';

const T0 = '2026-12-01T10:00:00.000Z';
const record: FactoryRecord = {
  serial: 'LK0001',
  model: 'lekiwi',
  batchId: 'B1',
  state: 'registered',
  thingName: 'lekiwi-LK0001',
  supersededCertificateIds: [],
  claims: 0,
  registeredAt: T0,
  updatedAt: T0,
};

const batch: FactoryBatch = {
  batchId: 'B1',
  model: 'lekiwi',
  allowance: 5,
  allowanceFixed: false,
  registered: 5,
  claimed: 0,
  claimCertificateIds: ['claim-cert-batch-a'],
  createdAt: T0,
  updatedAt: T0,
};

/** A store that answers every read with `record` (no head) and every commit with `outcome`, keeping the commits. */
function fakeClaims(outcome: (commit: ClaimCommit) => ClaimCommitOutcome, read: () => { record: FactoryRecord | undefined; head: RobotHead | null } = () => ({ record, head: null })) {
  const commits: ClaimCommit[] = [];
  const refusals: string[] = [];
  const reads: string[] = [];
  const claims: ProvisioningClaims = {
    readClaimState: async (serial, guess) => {
      reads.push(`${serial}:${guess ?? '-'}`);
      return read();
    },
    commitClaim: async (commit) => {
      commits.push(commit);
      return outcome(commit);
    },
    recordRefusal: async (_serial, refusal) => {
      refusals.push(refusal.reason);
    },
  };
  return { claims, commits, refusals, reads };
}

describe('pre-provisioning hook use case', () => {
  it('gives up after a bounded number of lost races, so IoT answers ACCESS_DENIED well inside its 5 s', async () => {
    const store = fakeClaims(() => ({ status: 'changed', conflict: true }));

    const hook = preProvisioningHook({ claims: store.claims, now: () => new Date(T0), sleep: async () => undefined }, hookInput({ SerialNumber: 'LK0001' }));

    await expect(hook).rejects.toBeInstanceOf(ProvisioningContendedError);
    expect(store.commits).toHaveLength(MAX_CLAIM_ATTEMPTS);
  });

  it('admits a first claim with one read and one commit carrying the claim and RobotProvisioned together', async () => {
    const store = fakeClaims(() => ({ status: 'committed' }));

    const result = await preProvisioningHook({ claims: store.claims, now: () => new Date(T0) }, hookInput({ SerialNumber: 'LK0001', Model: 'lekiwi' }, 'cert-1'));

    expect(result.decision).toMatchObject({ allow: true, claim: 'first', attempts: 1 });
    expect(store.reads).toEqual(['LK0001:lekiwi-LK0001']);
    expect(store.commits).toHaveLength(1);
    expect(store.commits[0]).toMatchObject({
      kind: 'first',
      batchId: 'B1',
      certificateId: 'cert-1',
      claimCertificateId: 'claim-cert-batch-a',
      append: { robotId: 'lekiwi-LK0001', expectedRevision: null, expectedLastSeq: 0 },
    });
    expect(store.commits[0]!.append!.events).toEqual([
      expect.objectContaining({ type: 'RobotProvisioned', eventId: 'provisioned:cert-1', data: expect.objectContaining({ serial: 'LK0001', batch: 'B1', claim: 'first' }) }),
    ]);
  });

  it('names the refusal from the batch the failed transaction saw: wrong claim certificate, then exhausted; nothing read again', async () => {
    const foreign = fakeClaims(() => ({ status: 'condition-failed', recordFailed: false, batchFailed: true, record, batch: { ...batch, claimCertificateIds: ['claim-other'] } }));
    const full = fakeClaims(() => ({ status: 'condition-failed', recordFailed: false, batchFailed: true, record, batch: { ...batch, claimed: 5 } }));

    const wrong = await preProvisioningHook({ claims: foreign.claims, now: () => new Date(T0) }, hookInput({ SerialNumber: 'LK0001' }));
    const exhausted = await preProvisioningHook({ claims: full.claims, now: () => new Date(T0) }, hookInput({ SerialNumber: 'LK0001' }));

    expect(wrong).toMatchObject({ response: { allowProvisioning: false }, decision: { reason: 'HOOK_DENIED_WRONG_BATCH', attempts: 1 } });
    expect(exhausted.decision).toMatchObject({ allow: false, reason: 'HOOK_DENIED_BATCH_EXHAUSTED' });
    expect([foreign.reads.length, full.reads.length]).toEqual([1, 1]);
    expect([foreign.refusals, full.refusals]).toEqual([['HOOK_DENIED_WRONG_BATCH'], ['HOOK_DENIED_BATCH_EXHAUSTED']]);
  });

  it('decides again when the record changed under the claim (here: retired meanwhile)', async () => {
    let reads = 0;
    const store = fakeClaims(
      () => ({ status: 'condition-failed', recordFailed: true, batchFailed: false }),
      () => ({ record: reads++ === 0 ? record : { ...record, state: 'retired' }, head: null }),
    );

    const result = await preProvisioningHook({ claims: store.claims, now: () => new Date(T0) }, hookInput({ SerialNumber: 'LK0001' }));

    expect(result.decision).toMatchObject({ allow: false, reason: 'HOOK_DENIED_RETIRED', attempts: 2 });
    expect(store.commits).toHaveLength(1);
  });

  it('answers a repeat of the admitted certificate whose event is logged without writing anything', async () => {
    const provisioned: FactoryRecord = { ...record, state: 'provisioned', certificateId: 'cert-1', claimCertificateId: 'claim-cert-batch-a', claims: 1 };
    const first = fakeClaims(() => ({ status: 'committed' }), () => ({ record, head: null }));
    await preProvisioningHook({ claims: first.claims, now: () => new Date(T0) }, hookInput({ SerialNumber: 'LK0001' }, 'cert-1'));
    const append = first.commits[0]!.append!;
    const head: RobotHead = {
      robotId: 'lekiwi-LK0001',
      state: append.state,
      lastSeq: 1,
      revision: 1,
      telemetry: null,
      outbox: null,
      updatedAt: T0,
    };
    const repeat = fakeClaims(() => ({ status: 'committed' }), () => ({ record: provisioned, head }));

    const again = await preProvisioningHook({ claims: repeat.claims, now: () => new Date(T0) }, hookInput({ SerialNumber: 'LK0001' }, 'cert-1'));

    expect(again.decision).toMatchObject({ allow: true, claim: 'repeat' });
    expect(repeat.commits).toEqual([]);
  });
});

describe('admission and batch refusal (domain)', () => {
  it('plans from the record alone: first, repeat, re-image, or a refusal', () => {
    const provisioned: FactoryRecord = { ...record, state: 'provisioned', certificateId: 'cert-1' };
    expect(admit(record, { serial: 'LK0001', certificateId: 'c' })).toEqual({ allow: true, thingName: 'lekiwi-LK0001', claim: 'first' });
    expect(admit(provisioned, { serial: 'LK0001', certificateId: 'cert-1' })).toMatchObject({ allow: true, claim: 'repeat' });
    expect(admit(provisioned, { serial: 'LK0001', certificateId: 'cert-2' })).toMatchObject({ claim: 'reimage', supersededCertificateId: 'cert-1' });
    expect(admit(provisioned, { serial: 'LK0001', certificateId: 'cert-2' }, { holderOnline: true })).toMatchObject({ reason: 'HOOK_DENIED_ALREADY_CLAIMED' });
    expect(admit(undefined, { serial: 'LK0001', certificateId: 'c' })).toMatchObject({ reason: 'HOOK_DENIED_UNKNOWN_SERIAL' });
    expect(admit(record, { serial: 'LK0001', model: 'xle', certificateId: 'c' })).toMatchObject({ reason: 'HOOK_DENIED_MODEL_MISMATCH' });
  });

  it('refuses another batch\'s claim before counting places; a re-image needs the claim but no place', () => {
    const full = { ...batch, claimed: 5 };
    expect(batchRefusal(full, 'claim-other', 'first')).toBe('HOOK_DENIED_WRONG_BATCH');
    expect(batchRefusal(full, 'claim-cert-batch-a', 'first')).toBe('HOOK_DENIED_BATCH_EXHAUSTED');
    expect(batchRefusal(full, 'claim-cert-batch-a', 'reimage')).toBeUndefined();
    expect(batchRefusal(full, 'claim-other', 'reimage')).toBe('HOOK_DENIED_WRONG_BATCH');
    expect(batchRefusal({ ...batch, claimCertificateIds: [] }, 'claim-cert-batch-a', 'first')).toBe('HOOK_DENIED_WRONG_BATCH');
    expect(batchRefusal(batch, 'claim-cert-batch-a', 'first')).toBeUndefined();
    expect(batchRefusal(undefined, 'claim-cert-batch-a', 'first')).toBe('HOOK_DENIED_BATCH_EXHAUSTED');
  });
});

describe('serial lists for the factory CLI', () => {
  it('reads a CSV with a header, comments and a model column', () => {
    const entries = serialsFromCsv('Serial,Model\r\n# spare boards\r\nLK0001,lekiwi\r\n"LK0002",lekiwi\r\n', 'line.csv', 'lekiwi');
    expect(validateSerials(entries)).toEqual(['LK0001', 'LK0002']);
  });

  it('reads a CSV without a header from its first column', () => {
    expect(validateSerials(serialsFromCsv('LK0001,first shift\nLK0002\n', 'plain.csv', 'lekiwi'))).toEqual(['LK0001', 'LK0002']);
  });

  it('names every bad entry: a model that differs, an empty item, a duplicate, nothing at all', () => {
    expect(() => serialsFromCsv('serial,model\nXL0001,xle\n', 'mixed.csv', 'lekiwi')).toThrow(
      'mixed.csv line 2: model xle differs from the batch\'s model lekiwi',
    );
    expect(() => validateSerials(serialsFromList('A1,,A1'))).toThrow(SerialListError);
    try {
      validateSerials(serialsFromList('A1,,A1'));
    } catch (error) {
      expect((error as SerialListError).problems).toEqual([
        '--serials item 2: serial "" must be 1–64 letters, digits, "_" or "-", starting with a letter or digit',
        '--serials item 3: serial A1 is listed twice (first at --serials item 1)',
      ]);
    }
    expect(() => validateSerials(serialsFromCsv('# only a comment\n', 'empty.csv', 'lekiwi'))).toThrow('no serials given');
  });
});

