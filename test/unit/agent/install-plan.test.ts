import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  bootDecision,
  InstallRecord,
  MAX_INSTALL_ATTEMPTS,
  objectsToFetch,
  versionsToPrune,
  type DiskFacts,
} from '../../../agent/core/install-plan.js';
import { INSTALL_STEPS, type InstallStep } from '../../../schemas/deployments.js';

const sha = (n: number) => n.toString(16).padStart(64, '0');

function record(step: InstallStep, overrides: Partial<InstallRecord> = {}): InstallRecord {
  return InstallRecord.parse({
    jobId: 'dep-01J0000000000000000000000A-b0',
    executionNumber: 1,
    deploymentId: 'dep-01J0000000000000000000000A',
    kind: 'deploy',
    version: '2.0.0',
    fromVersion: '1.0.0',
    manifestSha256: sha(99),
    step,
    startedAt: 1_000,
    attempt: 1,
    healthCheckTimeoutSeconds: 30,
    filesFetched: 0,
    bytesFetched: 0,
    ...overrides,
  });
}

const disk = (currentVersion: string | null, complete: readonly string[]): DiskFacts => ({
  currentVersion,
  versionComplete: (v) => complete.includes(v),
});

describe('objectsToFetch', () => {
  it('lists only the objects the cache lacks, each once, with their bytes', () => {
    const files = [
      { path: 'a', sha256: sha(1), size: 10, mode: 0o644 },
      { path: 'b', sha256: sha(2), size: 20, mode: 0o644 },
      { path: 'c', sha256: sha(2), size: 20, mode: 0o755 },
      { path: 'd', sha256: sha(3), size: 30, mode: 0o644 },
    ];
    const plan = objectsToFetch({ files }, (s) => s === sha(3));
    expect(plan.objects.map((f) => f.path)).toEqual(['a', 'b']);
    expect(plan.bytes).toBe(30);
    expect(objectsToFetch({ files }, () => true)).toEqual({ objects: [], bytes: 0 });
  });
});

describe('bootDecision: every persisted step', () => {
  it('does nothing without a record', () => {
    expect(bootDecision(undefined, disk('1.0.0', ['1.0.0']))).toEqual({ action: 'none' });
  });

  it.each(['fetching', 'staged'] as const)('%s: resumes (one more attempt) while current is still fromVersion', (step) => {
    const decision = bootDecision(record(step), disk('1.0.0', ['1.0.0']));
    expect(decision).toMatchObject({ action: 'resume', record: { step, attempt: 2 } });
  });

  it.each(['fetching', 'staged'] as const)('%s: rolls back when current is not fromVersion', (step) => {
    expect(bootDecision(record(step), disk('3.0.0', ['1.0.0', '3.0.0']))).toMatchObject({ action: 'roll-back', reason: 'INTERRUPTED' });
  });

  it('switched with current on the new version: restarts and checks again', () => {
    expect(bootDecision(record('switched'), disk('2.0.0', ['1.0.0', '2.0.0']))).toMatchObject({ action: 'check', restart: true, record: { attempt: 2 } });
  });

  it('switched before the rename landed: switches to the complete version and checks', () => {
    expect(bootDecision(record('switched'), disk('1.0.0', ['1.0.0', '2.0.0']))).toMatchObject({ action: 'switch-and-check' });
  });

  it('restarted: checks again without restarting', () => {
    expect(bootDecision(record('restarted'), disk('2.0.0', ['1.0.0', '2.0.0']))).toMatchObject({ action: 'check', restart: false });
  });

  it('restarted but current on the old version: rolls back', () => {
    expect(bootDecision(record('restarted'), disk('1.0.0', ['1.0.0', '2.0.0']))).toMatchObject({ action: 'roll-back', reason: 'INTERRUPTED' });
  });

  it.each(['switched', 'restarted'] as const)('%s with an incomplete new version: rolls back, never switches', (step) => {
    expect(bootDecision(record(step), disk('1.0.0', ['1.0.0']))).toMatchObject({ action: 'roll-back', reason: 'INTERRUPTED' });
  });

  it('verified on the new version: reports success (even after many attempts)', () => {
    expect(bootDecision(record('verified', { attempt: 9 }), disk('2.0.0', ['1.0.0', '2.0.0']))).toMatchObject({ action: 'report-success' });
  });

  it('verified but current elsewhere: rolls back', () => {
    expect(bootDecision(record('verified'), disk('1.0.0', ['1.0.0', '2.0.0']))).toMatchObject({ action: 'roll-back' });
  });

  it.each(['fetching', 'staged', 'switched', 'restarted'] as const)('%s after MAX_INSTALL_ATTEMPTS: rolls back as INTERRUPTED', (step) => {
    const decision = bootDecision(record(step, { attempt: MAX_INSTALL_ATTEMPTS }), disk('2.0.0', ['1.0.0', '2.0.0']));
    expect(decision).toMatchObject({ action: 'roll-back', reason: 'INTERRUPTED' });
  });

  it('a robot that ran nothing before: fromVersion null is the rollback target', () => {
    expect(bootDecision(record('fetching', { fromVersion: null }), disk(null, []))).toMatchObject({ action: 'resume' });
    expect(bootDecision(record('staged', { fromVersion: null }), disk('2.0.0', ['2.0.0']))).toMatchObject({ action: 'roll-back' });
  });

  it('property: a decision never points current at an incomplete version and only resumes below the limit', () => {
    const versions = ['1.0.0', '2.0.0', '3.0.0'];
    fc.assert(
      fc.property(
        fc.constantFrom(...INSTALL_STEPS),
        fc.integer({ min: 1, max: 6 }),
        fc.constantFrom<string | null>(null, ...versions),
        fc.subarray(versions),
        fc.constantFrom<string | null>(null, '1.0.0'),
        (step, attempt, current, complete, fromVersion) => {
          const rec = record(step, { attempt, fromVersion });
          const decision = bootDecision(rec, disk(current, complete));
          if (decision.action === 'switch-and-check' || decision.action === 'check') {
            expect(complete).toContain(rec.version);
            expect(attempt).toBeLessThan(MAX_INSTALL_ATTEMPTS);
          }
          if (decision.action === 'resume') {
            expect(current).toBe(fromVersion);
            expect(decision.record.attempt).toBe(attempt + 1);
          }
          if (decision.action === 'report-success') expect(current).toBe(rec.version);
          expect(decision.action).not.toBe('none');
        },
      ),
    );
  });
});

describe('versionsToPrune', () => {
  const v = (version: string, installedAt: number) => ({ version, installedAt });

  it('keeps the newest `keep`, never the protected ones', () => {
    const all = [v('1', 1), v('2', 2), v('3', 3), v('4', 4), v('5', 5)];
    expect(versionsToPrune(all, ['5', '4'], 3).sort()).toEqual(['1', '2']);
    // An old rollback target is kept even though newer ones exist.
    expect(versionsToPrune(all, ['5', '1'], 3).sort()).toEqual(['2', '3']);
    expect(versionsToPrune(all, ['5', null], 2).sort()).toEqual(['1', '2', '3']);
  });

  it('property: never prunes a protected version, and keeps at least min(keep, count)', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.integer({ min: 0, max: 30 }), { maxLength: 12 }), fc.integer({ min: 2, max: 5 }), (ids, keep) => {
        const all = ids.map((id) => v(`v${id}`, id));
        const protect = all.slice(0, 2).map((x) => x.version);
        const doomed = versionsToPrune(all, protect, keep);
        for (const p of protect) expect(doomed).not.toContain(p);
        expect(all.length - doomed.length).toBeGreaterThanOrEqual(Math.min(keep, all.length));
      }),
    );
  });
});
