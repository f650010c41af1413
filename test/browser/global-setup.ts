import { fileURLToPath } from 'node:url';
import { ensureDashboardBuilt } from '../../local/dashboard-build.js';

/**
 * The browser tests run the dashboard the local cloud serves: dashboard/dist, built from the tree. Built here once,
 * before any test file starts a local cloud, so that cloud processes starting side by side never build it at the
 * same time (each `npm start` builds it only when it is older than its sources).
 */
export default async function setup(): Promise<void> {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  await ensureDashboardBuilt({ root }, (reason) => console.info(`Building the dashboard for the browser tests (${reason})…`));
}
