import type { DiscoverResult, ReportNowCommand } from '../../schemas/index.js';
import { settleConcurrently } from '../platform/concurrency.js';
import type { FleetQueries } from './http/fleet-queries.js';
import type { RobotCommandChannel } from './ports.js';

/**
 * "Report now" for the whole fleet: every robot the read model has online is sent `report-now` with one request id,
 * and answers with a fresh telemetry sample that reaches the live feed like any other. Asking is fire-and-forget —
 * the answers come back through telemetry, not to this call. A robot whose command could not be published is counted
 * and logged; it does not stop the others.
 */

/** The agent's command for an immediate telemetry sample (agent/agent.ts answers it on `…/report-now/reply`). */
export const REPORT_NOW = 'report-now';
/** Publishes at once at most: IoT Core's data plane takes thousands a second, a Lambda's sockets fewer. */
export const DISCOVER_CONCURRENCY = 16;
/** Robots read from the read model per page. */
const PAGE_SIZE = 500;
/** Failures logged one by one; beyond this only the count (a broker outage would otherwise log the whole fleet). */
const LOGGED_FAILURES = 10;

export interface DiscoverDependencies {
  readonly queries: FleetQueries;
  readonly robotCommands: RobotCommandChannel;
  readonly newRequestId: () => string;
  readonly log: (message: string, details: Record<string, unknown>) => void;
}

export async function discoverFleet(deps: DiscoverDependencies, options: { concurrency?: number } = {}): Promise<DiscoverResult> {
  const requestId = deps.newRequestId();
  const robotIds = await onlineRobotIds(deps.queries);
  const payload: ReportNowCommand = { requestId };
  const results = await settleConcurrently(robotIds, options.concurrency ?? DISCOVER_CONCURRENCY, (robotId) =>
    deps.robotCommands.send(robotId, REPORT_NOW, payload),
  );
  let failed = 0;
  results.forEach((result, index) => {
    if (result.status === 'fulfilled') return;
    failed += 1;
    if (failed <= LOGGED_FAILURES) {
      deps.log('report-now could not be sent to a robot', { requestId, robotId: robotIds[index], error: result.reason });
    }
  });
  if (failed > 0) deps.log('discover: some robots were not asked', { requestId, failed, asked: robotIds.length - failed });
  return { requestId, asked: robotIds.length - failed, failed };
}

async function onlineRobotIds(queries: FleetQueries): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await queries.listRobots({ status: 'online', limit: PAGE_SIZE, cursor });
    ids.push(...page.items.map((robot) => robot.robotId));
    cursor = page.nextCursor ?? undefined;
  } while (cursor !== undefined);
  return ids;
}
