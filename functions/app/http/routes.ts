import { z } from 'zod';
import { ListEventsQuery, ListRobotsQuery, type Role } from '../../../schemas/index.js';
import { HttpError } from './errors.js';
import type { FleetQueries } from './fleet-queries.js';
import { allValid, parseQuery, robotIdParameter, type ApiRequest } from './request.js';
import { markFailed, recover, type CommandDependencies } from './robot-commands.js';

export interface RouteDependencies extends CommandDependencies {
  readonly queries: FleetQueries;
}

export interface Route {
  /** The least role that may call the route (admin ⊇ engineer ⊇ operator). */
  readonly role: Role;
  /** The JSON body of a 200 answer; failures are thrown as errors. */
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
