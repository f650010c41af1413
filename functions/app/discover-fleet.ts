import type { DiscoverOutcome, DiscoverResult, ReportNowCommand } from '../../schemas/index.js';
import { settleConcurrently } from '../platform/concurrency.js';
import type { FleetQueries } from './http/fleet-queries.js';
import type { RobotCommandChannel } from './ports.js';

/**
 * "Report now" for the whole fleet or a selection: every robot the read model has online (of the selection) is sent
 * `report-now` with one request id, and answers with a fresh telemetry sample that reaches the live feed like any
 * other. Asking is fire-and-forget — the answers come back through telemetry, not to this call. A robot whose command
 * could not be published is counted and logged; it does not stop the others. A selection's robots that are offline or
 * not in the fleet are not asked, and the answer says so per robot.
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

export interface DiscoverOptions {
  readonly concurrency?: number;
  /** Just these robots (the dashboard's selection); absent: every online robot. */
  readonly robotIds?: readonly string[];
}

export async function discoverFleet(deps: DiscoverDependencies, options: DiscoverOptions = {}): Promise<DiscoverResult> {
  const requestId = deps.newRequestId();
  const concurrency = options.concurrency ?? DISCOVER_CONCURRENCY;
  const selection = options.robotIds ? await selectedRobots(deps.queries, [...new Set(options.robotIds)], concurrency) : undefined;
  const robotIds = selection ? selection.filter((robot) => robot.outcome === 'online').map((robot) => robot.robotId) : await onlineRobotIds(deps.queries);
  const payload: ReportNowCommand = { requestId };
  const results = await settleConcurrently(robotIds, concurrency, (robotId) => deps.robotCommands.send(robotId, REPORT_NOW, payload));
  let failed = 0;
  const failedIds = new Set<string>();
  results.forEach((result, index) => {
    if (result.status === 'fulfilled') return;
    failed += 1;
    failedIds.add(robotIds[index]!);
    if (failed <= LOGGED_FAILURES) {
      deps.log('report-now could not be sent to a robot', { requestId, robotId: robotIds[index], error: result.reason });
    }
  });
  if (failed > 0) deps.log('discover: some robots were not asked', { requestId, failed, asked: robotIds.length - failed });
  const answer: DiscoverResult = { requestId, asked: robotIds.length - failed, failed };
  if (!selection) return answer;
  return {
    ...answer,
    robots: selection.map(({ robotId, outcome }) => ({
      robotId,
      outcome: outcome === 'online' ? (failedIds.has(robotId) ? 'failed' : 'asked') : outcome,
    })),
  };
}

/** Each selected robot as the read model has it: online (to be asked), offline, or not in the fleet. */
async function selectedRobots(
  queries: FleetQueries,
  robotIds: readonly string[],
  concurrency: number,
): Promise<{ robotId: string; outcome: 'online' | Exclude<DiscoverOutcome, 'asked' | 'failed'> }[]> {
  const found = await settleConcurrently(robotIds, concurrency, (robotId) => queries.getRobot(robotId));
  return found.map((result, index) => {
    const robotId = robotIds[index]!;
    // A read that failed is the whole request's failure (a 500), as when the fleet list cannot be read.
    if (result.status === 'rejected') throw result.reason;
    const robot = result.value;
    return { robotId, outcome: robot === null ? 'not-found' : robot.status === 'online' ? 'online' : 'offline' };
  });
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
