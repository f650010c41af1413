import {
  CommandResult,
  DiscoverRequest,
  DiscoverResult,
  EventPage,
  FleetMetrics,
  ListEventsQuery,
  ListRobotsQuery,
  MarkFailedRequest,
  RecoverRequest,
  RobotId,
  RobotPage,
  RobotTelemetryQuery,
  RobotView,
  TELEMETRY_HISTORY_MAX_SAMPLES,
  TelemetryHistory,
} from '../../../schemas/index.js';
import { openApiDocument, OpenApiDocumentSchema, type OpenApiDocument, type RouteContract } from '../../../schemas/openapi.js';
import { logger } from '../../platform/observability.js';
import { discoverFleet } from '../discover-fleet.js';
import type { RobotCommandChannel } from '../ports.js';
import { HttpError, invalidRequest } from './errors.js';
import type { FleetQueries } from './fleet-queries.js';
import { allValid, IdempotencyKey, noQuery, parseBody, parseQuery, robotIdParameter, type ApiRequest } from './request.js';
import { markFailed, recover, type CommandDependencies } from './robot-commands.js';
import { telemetryWindow } from './telemetry-window.js';
import { DEPLOYMENT_ROUTES } from './deployments.js';
import type { DeploymentDependencies } from '../deployments/orchestrator.js';
import { HTTP_ROUTE_KEYS, type HttpRouteKey } from '../../../schemas/routes.js';
import { ROTATION_COMMANDS, RotateCertificateRequest, RotateCertificateResult, type RotateCertificateCommand } from '../../../schemas/rotation.js';

export interface RouteDependencies extends CommandDependencies {
  readonly queries: FleetQueries;
  /** Commands to robots over MQTT (`POST /discover`); request ids come from `newEventId`. */
  readonly robotCommands: RobotCommandChannel;
  /** Deployments (issue 12, ./deployments.ts); absent where they are not set up: those routes answer 503. */
  readonly deployments?: DeploymentDependencies | undefined;
}

/**
 * A route: its contract (role, success status, parameters, body and answers: schemas/openapi.ts documents the API
 * from these) and its handler, which must parse with the same schemas the contract names.
 */
export interface Route extends RouteContract {
  /** The JSON body of a success (`response`); failures are thrown as errors. */
  handle(request: ApiRequest, deps: RouteDependencies): Promise<unknown>;
}

const IDEMPOTENCY_KEY = {
  schema: IdempotencyKey.optional(),
  description:
    'Makes the command safe to retry: a repeat with the same key and request answers as the first did and appends nothing; the same key with another request is a 422.',
};

/** `/api/v2`, keyed by API Gateway route key: exactly the keys of schemas/routes.ts, which infra declares. */
export const ROUTES = {
  'GET /api/v2/robots': {
    operationId: 'listRobots',
    summary: 'List robots, in robot id order, a page at a time (follow nextCursor)',
    role: 'operator',
    query: ListRobotsQuery,
    response: RobotPage,
    handle: (request, { queries }) => queries.listRobots(parseQuery(request, ListRobotsQuery)),
  },
  'GET /api/v2/robots/healthy': {
    operationId: 'listHealthyRobots',
    summary: 'List healthy robots: online, not failed, no active critical alert',
    role: 'operator',
    query: ListRobotsQuery,
    response: RobotPage,
    handle: (request, { queries }) => queries.listRobots({ ...parseQuery(request, ListRobotsQuery), only: 'healthy' }),
  },
  'GET /api/v2/robots/deployable': {
    operationId: 'listDeployableRobots',
    summary: 'List deployable robots: healthy, not teleoperated, not mid-deployment',
    role: 'operator',
    query: ListRobotsQuery,
    response: RobotPage,
    handle: (request, { queries }) => queries.listRobots({ ...parseQuery(request, ListRobotsQuery), only: 'deployable' }),
  },
  'GET /api/v2/robots/{id}': {
    operationId: 'getRobot',
    summary: 'One robot, as the read model has it',
    role: 'operator',
    pathParameters: { id: RobotId },
    response: RobotView,
    errors: { 404: ['ROBOT_NOT_FOUND'] },
    handle: async (request, { queries }) => {
      const [robotId] = allValid(
        () => robotIdParameter(request),
        () => noQuery(request),
      );
      return (await queries.getRobot(robotId)) ?? robotNotFound(robotId);
    },
  },
  'GET /api/v2/robots/{id}/events': {
    operationId: 'listRobotEvents',
    summary:
      "A robot's event history, newest first, a page at a time (follow nextCursor); with `after`, the events after that seq, oldest first",
    role: 'operator',
    pathParameters: { id: RobotId },
    query: ListEventsQuery,
    response: EventPage,
    errors: { 404: ['ROBOT_NOT_FOUND'] },
    handle: async (request, { queries }) => {
      const [robotId, query] = allValid(
        () => robotIdParameter(request),
        () => parseQuery(request, ListEventsQuery),
      );
      if (query.after !== undefined && query.cursor !== undefined) {
        throw invalidRequest(
          ['after', 'cursor'].map((field) => ({ field, message: 'after and cursor cannot be used together: a cursor carries the listing on by itself' })),
        );
      }
      return (await queries.listEvents(robotId, query)) ?? robotNotFound(robotId);
    },
  },
  'GET /api/v2/robots/{id}/telemetry': {
    operationId: 'getRobotTelemetry',
    summary:
      "A robot's telemetry samples from `from` to `to`, oldest first: the last hour by default, at most 24 hours and 3600 samples (the newest; `truncated` says more were left out)",
    role: 'operator',
    pathParameters: { id: RobotId },
    query: RobotTelemetryQuery,
    response: TelemetryHistory,
    errors: { 404: ['ROBOT_NOT_FOUND'] },
    handle: async (request, { queries, now }): Promise<TelemetryHistory> => {
      const [robotId, window] = allValid(
        () => robotIdParameter(request),
        () => telemetryWindow(parseQuery(request, RobotTelemetryQuery), now()),
      );
      const history = await queries.telemetryHistory(robotId, { ...window, limit: TELEMETRY_HISTORY_MAX_SAMPLES });
      if (!history) return robotNotFound(robotId);
      return { robotId, from: window.from.toISOString(), to: window.to.toISOString(), ...history };
    },
  },
  'GET /api/v2/metrics': {
    operationId: 'getFleetMetrics',
    summary: 'Fleet counts by status, lifecycle and model, with every key present',
    role: 'operator',
    response: FleetMetrics,
    handle: (request, { queries }) => {
      noQuery(request);
      return queries.metrics();
    },
  },
  'POST /api/v2/robots/{id}/fail': {
    operationId: 'markRobotFailed',
    summary: 'Mark a robot failed, by the caller, with a reason',
    role: 'engineer',
    pathParameters: { id: RobotId },
    headers: { 'Idempotency-Key': IDEMPOTENCY_KEY },
    body: MarkFailedRequest,
    response: CommandResult,
    errors: { 404: ['ROBOT_NOT_FOUND'], 409: ['ALREADY_FAILED'], 422: ['IDEMPOTENCY_KEY_REUSED'], 503: ['ROBOT_BUSY'] },
    handle: markFailed,
  },
  'POST /api/v2/robots/{id}/recover': {
    operationId: 'recoverRobot',
    summary: 'Recover a failed robot, with an optional note',
    role: 'engineer',
    pathParameters: { id: RobotId },
    headers: { 'Idempotency-Key': IDEMPOTENCY_KEY },
    body: RecoverRequest,
    response: CommandResult,
    errors: { 404: ['ROBOT_NOT_FOUND'], 409: ['NOT_FAILED'], 422: ['IDEMPOTENCY_KEY_REUSED'], 503: ['ROBOT_BUSY'] },
    handle: recover,
  },
  /** 202: the robots were asked; their answers arrive on the live feed as RobotTelemetry. */
  'POST /api/v2/discover': {
    operationId: 'discoverFleet',
    summary:
      'Ask every online robot (or those of `robotIds`) for a telemetry sample now; the answers arrive on the live feed',
    role: 'engineer',
    status: 202,
    body: DiscoverRequest,
    response: DiscoverResult,
    handle: (request, deps) => {
      const [, body] = allValid(
        () => noQuery(request),
        () => parseBody(request, DiscoverRequest),
      );
      return discoverFleet(
        {
          queries: deps.queries,
          robotCommands: deps.robotCommands,
          newRequestId: deps.newEventId,
          log: (message, details) => logger.warn(message, details),
        },
        body.robotIds ? { robotIds: body.robotIds } : {},
      );
    },
  },
  /**
   * 202: the robot was asked to rotate its certificate over its live connection (schemas/rotation.ts); the outcome
   * arrives in its event log as CertificateRotated or CertificateRotationFailed, under the answer's requestId.
   */
  'POST /api/v2/robots/{id}/rotate-certificate': {
    operationId: 'rotateRobotCertificate',
    summary:
      'Ask an online robot to rotate its certificate now (new key on the robot, new certificate, reconnect, then the old one is deactivated)',
    role: 'admin',
    status: 202,
    pathParameters: { id: RobotId },
    body: RotateCertificateRequest,
    response: RotateCertificateResult,
    errors: { 404: ['ROBOT_NOT_FOUND'], 409: ['ROBOT_OFFLINE'] },
    handle: async (request, { queries, robotCommands, newEventId }): Promise<RotateCertificateResult> => {
      const [robotId] = allValid(
        () => robotIdParameter(request),
        () => noQuery(request),
        () => parseBody(request, RotateCertificateRequest),
      );
      const robot = await queries.getRobot(robotId);
      if (!robot) return robotNotFound(robotId);
      if (robot.status !== 'online') {
        throw new HttpError(
          409,
          'ROBOT_OFFLINE',
          `Robot ${robotId} is offline: it rotates over its live connection. Retry once it is online (or let it rotate by itself before expiry).`,
        );
      }
      const requestId = `rotation-${newEventId()}`;
      const command: RotateCertificateCommand = { requestId };
      await robotCommands.send(robotId, ROTATION_COMMANDS.rotate, command);
      return { robotId, requestId };
    },
  },
  ...DEPLOYMENT_ROUTES,
  /** Authenticated like every route (any fleet group); the same document is kept in schemas/openapi.json. */
  'GET /api/v2/openapi.json': {
    operationId: 'getOpenApiDocument',
    summary: 'This API as an OpenAPI 3.1 document',
    role: 'operator',
    response: OpenApiDocumentSchema,
    handle: async (request) => {
      noQuery(request);
      return apiDocument();
    },
  },
} as const satisfies Record<HttpRouteKey, Route>;

export type RouteKey = HttpRouteKey;
export const ROUTE_KEYS: readonly RouteKey[] = HTTP_ROUTE_KEYS;

export function isRouteKey(value: string): value is RouteKey {
  return Object.hasOwn(ROUTES, value);
}

let document: OpenApiDocument | undefined;

/** The OpenAPI document of ROUTES, built once per process. */
export function apiDocument(): OpenApiDocument {
  document ??= openApiDocument(ROUTES);
  return document;
}

function robotNotFound(robotId: string): never {
  throw new HttpError(404, 'ROBOT_NOT_FOUND', `Robot ${robotId} is not known to the fleet.`);
}
