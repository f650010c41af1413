import { describe, expect, it } from 'vitest';
import type { ApiClient } from '../../../dashboard/src/contracts.js';
import { ApiRequestError } from '../../../dashboard/src/api/client.js';
import { BULK_CONCURRENCY, DISCOVER_CHUNK, permissionsFor, runBulk, type BulkResult } from '../../../dashboard/src/views/bulk.js';
import { robotView } from './fixtures.js';

/** An ApiClient for the bulk actions: records calls, answers each after `settle` (the test's hand on time). */
function fakeApi(options: { failIds?: readonly string[] } = {}) {
  const discoverCalls: string[][] = [];
  const started: string[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const gates: (() => void)[] = [];
  const gate = () => new Promise<void>((resolve) => gates.push(resolve));
  const call = async (robotId: string) => {
    started.push(robotId);
    inFlight += 1;
    maxInFlight = Math.max(maxInFlight, inFlight);
    await gate();
    inFlight -= 1;
    if (options.failIds?.includes(robotId)) throw new ApiRequestError(403, 'FORBIDDEN', 'needs the engineer role');
    return { robot: robotView(robotId, { lifecycle: 'failed' }), appended: [] };
  };
  const api = {
    discover: async (ids?: readonly string[]) => {
      discoverCalls.push([...(ids ?? [])]);
      if (options.failIds?.includes(ids?.[0] ?? '')) throw new ApiRequestError(500, 'INTERNAL_ERROR', 'boom');
      return { requestId: '00000000-0000-4000-8000-000000000000', asked: ids?.length ?? 0, failed: 0 };
    },
    markFailed: (robotId: string) => call(robotId),
    recover: (robotId: string) => call(robotId),
  } as unknown as ApiClient;
  const releaseAll = async () => {
    while (gates.length > 0 || inFlight > 0) {
      gates.splice(0).forEach((open) => open());
      await new Promise((resolve) => setImmediate(resolve));
    }
  };
  return { api, discoverCalls, started, gates, releaseAll, maxInFlight: () => maxInFlight };
}

const ids = (n: number) => Array.from({ length: n }, (_, i) => `lekiwi-R${String(i).padStart(4, '0')}`);

describe('bulk actions', () => {
  it('operators only watch; engineers and admins may do all (deploy too); no role may do nothing', () => {
    expect(permissionsFor('operator')).toEqual({ reportNow: false, markFailed: false, recover: false, deploy: false });
    expect(permissionsFor('engineer')).toEqual({ reportNow: true, markFailed: true, recover: true, deploy: true });
    expect(permissionsFor('admin')).toEqual({ reportNow: true, markFailed: true, recover: true, deploy: true });
    expect(permissionsFor(null)).toEqual({ reportNow: false, markFailed: false, recover: false, deploy: false });
  });

  it('report now asks in chunks of at most 100 ids and gives every robot one result', async () => {
    const fake = fakeApi({ failIds: ['lekiwi-R0200'] });
    const results: BulkResult[] = [];
    await runBulk(fake.api, 'report-now', ids(250), { onResult: (batch) => results.push(...batch) });
    expect(fake.discoverCalls.map((call) => call.length)).toEqual([DISCOVER_CHUNK, DISCOVER_CHUNK, 50]);
    expect(new Set(fake.discoverCalls.flat())).toEqual(new Set(ids(250)));
    expect(results).toHaveLength(250);
    expect(new Set(results.map((r) => r.robotId)).size).toBe(250);
    expect(results.filter((r) => !r.ok).map((r) => r.robotId)).toEqual(ids(250).slice(200));
    expect(results.find((r) => !r.ok)!.message).toBe('500 INTERNAL_ERROR: boom');
  });

  it('report now gives each robot the outcome the API names for it', async () => {
    const api = {
      discover: async (robotIds?: readonly string[]) => ({
        requestId: '00000000-0000-4000-8000-000000000000',
        asked: 1,
        failed: 0,
        robots: (robotIds ?? []).map((robotId, i) => ({ robotId, outcome: i === 0 ? 'asked' : 'offline' })),
      }),
    } as unknown as ApiClient;
    const results: BulkResult[] = [];
    await runBulk(api, 'report-now', ['lekiwi-A', 'lekiwi-B'], { onResult: (batch) => results.push(...batch) });
    expect(results).toEqual([
      { robotId: 'lekiwi-A', ok: true, message: 'asked to report now' },
      { robotId: 'lekiwi-B', ok: false, message: 'offline: not asked' },
    ]);
  });

  it('mark failed calls each robot with at most 8 in flight and reports each error by robot', async () => {
    const fake = fakeApi({ failIds: ['lekiwi-R0003'] });
    const results: BulkResult[] = [];
    const done = runBulk(fake.api, 'mark-failed', ids(30), { reason: 'flood', onResult: (batch) => results.push(...batch) });
    await new Promise((resolve) => setImmediate(resolve));
    expect(fake.started).toHaveLength(BULK_CONCURRENCY);
    await fake.releaseAll();
    await done;
    expect(fake.maxInFlight()).toBe(BULK_CONCURRENCY);
    expect(results).toHaveLength(30);
    expect(results.filter((r) => !r.ok)).toEqual([{ robotId: 'lekiwi-R0003', ok: false, message: '403 FORBIDDEN: needs the engineer role' }]);
  });

  it('stops starting calls once aborted; those in flight still report', async () => {
    const fake = fakeApi();
    const results: BulkResult[] = [];
    const controller = new AbortController();
    const done = runBulk(fake.api, 'recover', ids(30), { signal: controller.signal, onResult: (batch) => results.push(...batch) });
    await new Promise((resolve) => setImmediate(resolve));
    controller.abort();
    await fake.releaseAll();
    await done;
    expect(fake.started).toHaveLength(BULK_CONCURRENCY);
    expect(results).toHaveLength(BULK_CONCURRENCY);
  });
});
