import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BUILD_STAMP, dashboardFreshness, ensureDashboardBuilt } from '../../../local/dashboard-build.js';

/** When `npm start` rebuilds the dashboard: the build against the newest of its sources, in a scratch tree. */

let root: string;
const at = (minutes: number) => new Date(Date.parse('2026-12-01T10:00:00.000Z') + minutes * 60_000);

async function file(relative: string, minutes: number): Promise<void> {
  const full = path.join(root, relative);
  await mkdir(path.dirname(full), { recursive: true });
  await writeFile(full, relative);
  await utimes(full, at(minutes), at(minutes));
}

beforeEach(async () => {
  root = await mkdtemp(path.join(tmpdir(), 'dashboard-build-'));
  await file('dashboard/src/main.tsx', 0);
  await file('dashboard/src/views/FleetView.tsx', 1);
  await file('dashboard/index.html', 0);
  await file('dashboard/vite.config.ts', 0);
  await file('schemas/api.ts', 2);
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('dashboardFreshness', () => {
  it('wants a build when there is none', async () => {
    expect(await dashboardFreshness({ root })).toEqual({ current: false, reason: 'it has not been built yet' });
  });

  it('is current when the stamp is newer than every source, and names the source that changed since', async () => {
    await file(`dashboard/dist/${BUILD_STAMP}`, 5);
    expect(await dashboardFreshness({ root })).toEqual({ current: true });

    await file('dashboard/src/views/FleetView.tsx', 6);
    expect(await dashboardFreshness({ root })).toEqual({ current: false, reason: 'dashboard/src/views/FleetView.tsx changed since the last build' });
  });

  it.each(['schemas/dashboard.ts', 'dashboard/index.html', 'dashboard/vite.config.ts'])('counts %s as a source', async (source) => {
    await file(`dashboard/dist/${BUILD_STAMP}`, 5);
    await file(source, 7);
    expect(await dashboardFreshness({ root })).toEqual({ current: false, reason: `${source} changed since the last build` });
  });

  it('falls back to index.html when there is no stamp, and ignores the build output itself', async () => {
    await file('dashboard/dist/index.html', 5);
    expect(await dashboardFreshness({ root })).toEqual({ current: true });
    await file('dashboard/dist/assets/app.js', 9);
    expect(await dashboardFreshness({ root })).toEqual({ current: true });
    await file('dashboard/src/main.tsx', 6);
    expect((await dashboardFreshness({ root })).current).toBe(false);
  });

  it('takes another dist directory', async () => {
    await file(`elsewhere/${BUILD_STAMP}`, 5);
    expect(await dashboardFreshness({ root, distDir: path.join(root, 'elsewhere') })).toEqual({ current: true });
  });
});

describe('ensureDashboardBuilt', () => {
  it('does nothing when the build is current', async () => {
    await file(`dashboard/dist/${BUILD_STAMP}`, 5);
    const reasons: string[] = [];
    expect(await ensureDashboardBuilt({ root }, (reason) => reasons.push(reason))).toBe(false);
    expect(reasons).toEqual([]);
  });

  it('names the fix when Vite cannot be found for the tree', async () => {
    const reasons: string[] = [];
    await expect(ensureDashboardBuilt({ root }, (reason) => reasons.push(reason))).rejects.toThrow(/Vite is not installed: run npm ci/);
    expect(reasons).toEqual(['it has not been built yet']);
  });
});
