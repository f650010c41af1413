import { z } from 'zod';
import { DiscoverRequest, ListEventsQuery, ListRobotsQuery, type Role } from '../../../schemas/index.js';
import { logger } from '../../platform/observability.js';
import { discoverFleet } from '../discover-fleet.js';
import type { RobotCommandChannel } from '../ports.js';
import { HttpError } from './errors.js';
import type { FleetQueries } from './fleet-queries.js';
import { allValid, parseBody, parseQuery, robotIdParameter, type ApiRequest } from './request.js';
import { markFailed, recover, type CommandDependencies } from './robot-commands.js';

export interface RouteDependencies extends CommandDependencies {
  readonly queries: FleetQueries;
  /** Commands to robots over MQTT (`POST /discover`); request ids come from `newEventId`. */
  readonly robotCommands: RobotCommandChannel;
}

export interface Route {
  /** The least role that may call the route (admin ⊇ engineer ⊇ operator). */
  readonly role: Role;
  /** The status of a success. @default 200 */
  readonly status?: 200 | 202;
  /** The JSON body of a success; failures are thrown as errors. */
  handle(request: ApiRequest, deps: RouteDependencies): Promise<unknown>;
}

/** `/api/v2`, keyed by API Gateway route key: the same strings infra declares and the local gateway matches on. */
export const ROUTES = {
  'GET /api/v2/robots': {
    role: 'operator',
    handle: (request, { queries }) => queries.listRobots(parseQuery(request, ListRobotsQuery)),
  },
  'GET /api/v2/robots/healthy': {
    role: 'operator',
    handle: (request, { queries }) => queries.listRobots({ ...parseQuery(request, ListRobotsQuery), only: 'healthy' }),
  },
  'GET /api/v2/robots/deployable': {
    role: 'operator',
    handle: (request, { queries }) => queries.listRobots({ ...parseQuery(request, ListRobotsQuery), only: 'deployable' }),
  },
  'GET /api/v2/robots/{id}': {
    role: 'operator',
    handle: async (request, { queries }) => {
      const [robotId] = allValid(
        () => robotIdParameter(request),
        () => parseQuery(request, NoQuery),
      );
      return (await queries.getRobot(robotId)) ?? robotNotFound(robotId);
    },
  },
  'GET /api/v2/robots/{id}/events': {
    role: 'operator',
    handle: async (request, { queries }) => {
      const [robotId, query] = allValid(
        () => robotIdParameter(request),
        () => parseQuery(request, ListEventsQuery),
      );
      return (await queries.listEvents(robotId, query)) ?? robotNotFound(robotId);
    },
  },
  'GET /api/v2/metrics': {
    role: 'operator',
    handle: (request, { queries }) => {
      parseQuery(request, NoQuery);
      return queries.metrics();
    },
  },
  'POST /api/v2/robots/{id}/fail': { role: 'engineer', handle: markFailed },
  'POST /api/v2/robots/{id}/recover': { role: 'engineer', handle: recover },
  /** 202: the robots were asked; their answers arrive on the live feed as RobotTelemetry. */
  'POST /api/v2/discover': {
    role: 'engineer',
    status: 202,
    handle: (request, deps) => {
      allValid(
        () => parseQuery(request, NoQuery),
        () => parseBody(request, DiscoverRequest),
      );
      return discoverFleet({
        queries: deps.queries,
        robotCommands: deps.robotCommands,
        newRequestId: deps.newEventId,
        log: (message, details) => logger.warn(message, details),
      });
    },
  },
} as const satisfies Record<string, Route>;

export type RouteKey = keyof typeof ROUTES;
export const ROUTE_KEYS = Object.keys(ROUTES) as RouteKey[];

export function isRouteKey(value: string): value is RouteKey {
  return Object.hasOwn(ROUTES, value);
}

/** Routes without parameters still refuse unknown ones, so a typo (`?stauts=online`) is an error, not ignored. */
const NoQuery = z.object({}).strict();

function robotNotFound(robotId: string): never {
  throw new HttpError(404, 'ROBOT_NOT_FOUND', `Robot ${robotId} is not known to the fleet.`);
}
