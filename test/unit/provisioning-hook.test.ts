import { describe, expect, it } from 'vitest';
import type { FactoryRegistry } from '../../functions/app/provisioning/factory-registry.js';
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
import type { FactoryRecord } from '../../schemas/index.js';
import { hookInput } from '../support/factory.js';
import { InMemoryEventLog } from '../support/in-memory-event-log.js';

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

describe('pre-provisioning hook use case', () => {
  it('gives up after a bounded number of lost races, so IoT answers ACCESS_DENIED well inside its 5 s', async () => {
    let claims = 0;
    const registry = {
      readSerial: async () => record,
      readBatch: async () => ({ batchId: 'B1', model: 'lekiwi', allowance: 5, allowanceFixed: false, registered: 5, claimed: 0, createdAt: T0, updatedAt: T0 }),
      claim: async () => {
        claims++;
        return { status: 'changed' as const };
      },
      recordRefusal: async () => undefined,
    } as unknown as FactoryRegistry;

    const hook = preProvisioningHook(
      { registry, presence: { isOnline: async () => false }, log: new InMemoryEventLog(), now: () => new Date(T0), sleep: async () => undefined },
      hookInput({ SerialNumber: 'LK0001' }),
    );

    await expect(hook).rejects.toBeInstanceOf(ProvisioningContendedError);
    expect(claims).toBe(MAX_CLAIM_ATTEMPTS);
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

describe('pre-provisioning hook: RobotProvisioned', () => {
  const batch = { batchId: 'B1', model: 'lekiwi' as const, allowance: 5, allowanceFixed: false, registered: 5, claimed: 0, createdAt: T0, updatedAt: T0 };

  it('appends RobotProvisioned to the robot’s log before admitting, once per certificate', async () => {
    let current: FactoryRecord = record;
    const registry = {
      readSerial: async () => current,
      readBatch: async () => batch,
      claim: async (claim: { certificateId: string; claimCertificateId: string; at: Date }) => {
        current = { ...current, state: 'provisioned', certificateId: claim.certificateId, claimCertificateId: claim.claimCertificateId, claims: 1 };
        return { status: 'claimed' as const, record: current };
      },
      recordRefusal: async () => undefined,
    } as unknown as FactoryRegistry;
    const log = new InMemoryEventLog();
    const deps = { registry, presence: { isOnline: async () => false }, log, now: () => new Date(T0) };

    const first = await preProvisioningHook(deps, hookInput({ SerialNumber: 'LK0001' }, 'cert-1'));
    const again = await preProvisioningHook(deps, hookInput({ SerialNumber: 'LK0001' }, 'cert-1'));

    expect([first.decision, again.decision]).toMatchObject([{ allow: true, claim: 'first' }, { allow: true, claim: 'repeat' }]);
    const { events } = await log.readEvents('lekiwi-LK0001');
    expect(events.map((recorded) => recorded.event)).toEqual([
      expect.objectContaining({ type: 'RobotProvisioned', eventId: 'provisioned:cert-1', data: expect.objectContaining({ serial: 'LK0001', batch: 'B1', claim: 'first' }) }),
    ]);
  });

  it('does not admit when the log cannot record it: IoT then refuses and the robot retries', async () => {
    const registry = {
      readSerial: async () => record,
      readBatch: async () => batch,
      claim: async () => ({ status: 'claimed' as const, record: { ...record, state: 'provisioned', certificateId: 'cert-2' } }),
      recordRefusal: async () => undefined,
    } as unknown as FactoryRegistry;
    const log = new InMemoryEventLog();
    log.append = async () => {
      throw new Error('DynamoDB is down');
    };
    await expect(
      preProvisioningHook({ registry, presence: { isOnline: async () => false }, log, now: () => new Date(T0) }, hookInput({ SerialNumber: 'LK0001' }, 'cert-2')),
    ).rejects.toThrow('DynamoDB is down');
  });
});
