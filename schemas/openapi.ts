import { z } from 'zod';
import {
  ApiError,
  CommandResult,
  DiscoverRequest,
  DiscoverResult,
  EventPage,
  EventView,
  FleetMetrics,
  MarkFailedRequest,
  RecoverRequest,
  RobotPage,
  RobotView,
  ROLES,
  type ApiErrorCode,
  type Role,
} from './api.js';
import { CreateDeploymentRequest, DeploymentActionRequest, DeploymentSummary, DeploymentSummaryPage, DeploymentView, RobotSoftwareView } from './deployments.js';

/**
 * The OpenAPI 3.1 document of `/api/v2`, built from the route table (functions/app/http/routes.ts), which carries a
 * `RouteContract` next to each handler: the document cannot name a route, parameter or answer the table lacks. Pure:
 * the same table gives the same document, which the API serves (`GET /api/v2/openapi.json`) and the repository keeps
 * (schemas/openapi.json, written by `npm run schemas:export`, checked current by a test).
 *
 * Zod 4 writes JSON Schema draft 2020-12, OpenAPI 3.1's own dialect, so schemas go in unchanged. Requests are
 * described as the API accepts them (zod's input: defaults optional, coerced query numbers), answers as it sends them
 * (zod's output: no field beyond those listed).
 */

/** The status of a failure a route documents beyond those every route has (400, 401, 403, 429, 500). */
export type RouteErrorStatus = 404 | 409 | 422 | 503;

/** What the document needs of one route. */
export interface RouteContract {
  /** Unique, stable: client generators name their methods after it. */
  readonly operationId: string;
  readonly summary: string;
  readonly description?: string;
  /** The least role that may call the route (admin ⊇ engineer ⊇ operator). */
  readonly role: Role;
  /** The status of a success. @default 200 */
  readonly status?: 200 | 202;
  /** One schema per `{name}` in the path, no more. */
  readonly pathParameters?: Readonly<Record<string, z.ZodType>>;
  /** The query parameters, as one object; absent: the route takes none (and refuses any). */
  readonly query?: z.ZodObject;
  /** Request headers the route reads (names as sent, e.g. `Idempotency-Key`). */
  readonly headers?: Readonly<Record<string, { readonly schema: z.ZodType; readonly description: string }>>;
  /** The JSON request body; an empty body counts as `{}`. Absent: the route takes no body. */
  readonly body?: z.ZodType;
  /** The JSON body of a success. */
  readonly response: z.ZodType;
  /** The error codes this route may answer with, by status, beyond those every route has. */
  readonly errors?: Readonly<Partial<Record<RouteErrorStatus, readonly ApiErrorCode[]>>>;
}

export type OpenApiDocument = Readonly<Record<string, unknown>> & { readonly openapi: string };

/** What `GET /api/v2/openapi.json` answers: this very document (checked as a whole by OpenAPI's own schema). */
export const OpenApiDocumentSchema = z
  .looseObject({
    openapi: z.string().regex(/^3\.1\.\d+$/),
    info: z.looseObject({ title: z.string(), version: z.string() }),
    paths: z.record(z.string(), z.unknown()),
  })
  .describe('This OpenAPI document.');

/** API Gateway's own answer when it refuses a request before the handler (a bad token, throttling). */
export const GatewayError = z.object({ message: z.string() }).describe("API Gateway's own refusal, before the API runs.");

/**
 * Schemas worth a name in `components.schemas` (and so in generated clients), by direction: each is written once and
 * referred to wherever it appears. A route's schema missing here is named after its operation; anything nested and
 * unnamed is written inline.
 */
const NAMED_REQUESTS: Readonly<Record<string, z.ZodType>> = { MarkFailedRequest, RecoverRequest, DiscoverRequest, CreateDeploymentRequest, DeploymentActionRequest };
const NAMED_RESPONSES: Readonly<Record<string, z.ZodType>> = {
  RobotView,
  RobotSoftwareView,
  RobotPage,
  EventView,
  EventPage,
  FleetMetrics,
  CommandResult,
  DiscoverResult,
  ApiError,
  GatewayError,
  OpenApiDocument: OpenApiDocumentSchema,
  DeploymentView,
  DeploymentSummary,
  DeploymentSummaryPage,
};

const SECURITY_SCHEME = 'cognito';
const COMPONENT_REF = '#/components/schemas/';

/** The errors every route may answer with: the handler's own, and API Gateway's before it. */
const COMMON_ERRORS = {
  400: { codes: ['INVALID_REQUEST'], description: 'A path parameter, header, query parameter or body field is invalid; `details` names each.' },
  401: { codes: ['UNAUTHORIZED'], description: 'No valid bearer token (API Gateway answers `{ "message": "Unauthorized" }`).' },
  403: { codes: ['FORBIDDEN'], description: "The caller's groups do not grant the role the route needs; `details.requiredRole` names it." },
  500: { codes: ['INTERNAL_ERROR'], description: 'Something failed on the server; nothing internal is shown.' },
} as const satisfies Record<number, { codes: readonly ApiErrorCode[]; description: string }>;

const ROUTE_ERROR_DESCRIPTIONS: Readonly<Record<RouteErrorStatus, string>> = {
  404: 'The robot (or, on deployment routes, the deployment or release) is not known; `error.code` says which.',
  409: "The command does not apply to the robot's (or the deployment's) current state; `error.message` says why.",
  422: 'The Idempotency-Key was already used for another request (another route or body).',
  503: 'The robot changed too often while the command was being written (retry after `Retry-After` seconds), or deployments are not set up here.',
};

/** A route table that cannot be documented truthfully: the error names the route and the problem. */
export class RouteContractError extends Error {
  override readonly name = 'RouteContractError';
}

export interface OpenApiOptions {
  /** `info.version`. @default '2' */
  readonly version?: string;
}

/** The OpenAPI 3.1 document of the routes, keyed by API Gateway route key (`GET /api/v2/robots/{id}`). */
export function openApiDocument(routes: Readonly<Record<string, RouteContract>>, options: OpenApiOptions = {}): OpenApiDocument {
  const requestSchemas = new Map<string, z.ZodType>(Object.entries(NAMED_REQUESTS));
  const responseSchemas = new Map<string, z.ZodType>(Object.entries(NAMED_RESPONSES));
  const names = new Map<z.ZodType, string>([...requestSchemas, ...responseSchemas].map(([name, schema]) => [schema, name]));
  const operationIds = new Set<string>();
  const paths: Record<string, Record<string, unknown>> = {};

  for (const [routeKey, route] of Object.entries(routes)) {
    const { method, path } = splitRouteKey(routeKey);
    if (operationIds.has(route.operationId)) fail(routeKey, `operationId ${route.operationId} is used twice`);
    operationIds.add(route.operationId);
    const named = (schema: z.ZodType, suffix: string, into: Map<string, z.ZodType>) => {
      const name = names.get(schema) ?? `${capitalize(route.operationId)}${suffix}`;
      into.set(name, schema);
      return { $ref: `${COMPONENT_REF}${name}` };
    };
    const operation = {
      operationId: route.operationId,
      summary: route.summary,
      ...(route.description ? { description: route.description } : {}),
      tags: [tagOf(path)],
      security: [{ [SECURITY_SCHEME]: rolesGranting(route.role) }],
      'x-required-role': route.role,
      parameters: parameters(routeKey, path, route),
      ...(route.body
        ? { requestBody: { required: false, content: { 'application/json': { schema: named(route.body, 'Request', requestSchemas) } } } }
        : {}),
      responses: {
        [String(route.status ?? 200)]: {
          description: route.summary,
          content: { 'application/json': { schema: named(route.response, 'Response', responseSchemas) } },
        },
        ...errorResponses(route),
      },
    };
    paths[path] = { ...paths[path], [method.toLowerCase()]: operation };
  }

  const both = [...requestSchemas.keys()].filter((name) => responseSchemas.has(name));
  if (both.length > 0) {
    throw new RouteContractError(`${both.join(', ')} is both a request and a response body; give each direction its own schema.`);
  }

  return {
    openapi: '3.1.1',
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    info: {
      title: 'Lekiwi Heartbeat API',
      version: options.version ?? '2',
      description:
        'The fleet control plane over HTTP. Every route needs a Cognito bearer token (access or ID token of the ' +
        "dashboard client); the caller's `cognito:groups` grant roles, admin ⊇ engineer ⊇ operator. Every failure " +
        'is `{ error: { code, message, details } }`. Live updates come over the WebSocket API, whose messages have ' +
        'JSON Schemas in schemas/json/ (live-*.schema.json).',
    },
    tags: [...new Set(Object.keys(routes).map((key) => tagOf(splitRouteKey(key).path)))].map((name) => ({ name })),
    paths,
    components: {
      securitySchemes: {
        [SECURITY_SCHEME]: {
          type: 'http',
          scheme: 'bearer',
          bearerFormat: 'JWT',
          description:
            "A Cognito user pool token, checked by API Gateway's JWT authorizer. The security requirement of each " +
            'operation lists the groups that may call it.',
        },
      },
      schemas: { ...componentSchemas(requestSchemas, 'input'), ...componentSchemas(responseSchemas, 'output') },
    },
  };
}

function parameters(routeKey: string, path: string, route: RouteContract): unknown[] {
  const inPath = [...path.matchAll(/\{([^}]+)\}/g)].map(([, name]) => name as string);
  const declared = Object.keys(route.pathParameters ?? {});
  const greedy = inPath.find((name) => name.endsWith('+'));
  if (greedy) fail(routeKey, `greedy path parameter {${greedy}} has no OpenAPI equivalent`);
  const missing = inPath.filter((name) => !declared.includes(name));
  const extra = declared.filter((name) => !inPath.includes(name));
  if (missing.length > 0) fail(routeKey, `no schema for path parameter ${missing.map((name) => `{${name}}`).join(', ')}`);
  if (extra.length > 0) fail(routeKey, `pathParameters ${extra.join(', ')} are not in the path`);

  return [
    ...inPath.map((name) => ({ name, in: 'path', required: true, schema: inline(route.pathParameters![name]!) })),
    ...Object.entries(route.headers ?? {}).map(([name, { schema, description }]) => ({
      name,
      in: 'header',
      required: !schema.safeParse(undefined).success,
      description,
      schema: inline(schema),
    })),
    ...Object.entries(route.query?.shape ?? {}).map(([name, schema]) => {
      const field = schema as z.ZodType;
      return {
        name,
        in: 'query',
        required: !field.safeParse(undefined).success,
        ...(field.description ? { description: field.description } : {}),
        schema: inline(field),
      };
    }),
  ];
}

function errorResponses(route: RouteContract): Record<string, unknown> {
  const byStatus: [number, readonly ApiErrorCode[], string][] = [
    ...Object.entries(COMMON_ERRORS).map(([status, { codes, description }]): [number, readonly ApiErrorCode[], string] => [
      Number(status),
      codes,
      description,
    ]),
    ...Object.entries(route.errors ?? {}).map(([status, codes]): [number, readonly ApiErrorCode[], string] => [
      Number(status),
      codes ?? [],
      ROUTE_ERROR_DESCRIPTIONS[Number(status) as RouteErrorStatus],
    ]),
  ];
  const responses: Record<string, unknown> = {};
  for (const [status, codes, description] of byStatus.sort(([a], [b]) => a - b)) {
    const apiError = {
      allOf: [{ $ref: `${COMPONENT_REF}ApiError` }, { properties: { error: { properties: { code: { enum: [...codes] } } } } }],
    };
    const gatewayError = { $ref: `${COMPONENT_REF}GatewayError` };
    responses[String(status)] = {
      description: `${description} Codes: ${codes.join(', ')}.`,
      ...(status === 401 ? { headers: { 'WWW-Authenticate': { schema: { type: 'string' } } } } : {}),
      ...(status === 503 ? { headers: { 'Retry-After': { schema: { type: 'integer', minimum: 0 } } } } : {}),
      content: { 'application/json': { schema: status === 401 ? { anyOf: [apiError, gatewayError] } : apiError } },
    };
  }
  responses['429'] = {
    description: 'API Gateway throttled the request (`{ "message": "Too Many Requests" }`); retry with backoff.',
    content: { 'application/json': { schema: { $ref: `${COMPONENT_REF}GatewayError` } } },
  };
  return responses;
}

/** One registry per direction, so that nested named schemas become `$ref`s between components. */
function componentSchemas(schemas: ReadonlyMap<string, z.ZodType>, io: 'input' | 'output'): Record<string, unknown> {
  const registry = z.registry<{ id: string }>();
  for (const [id, schema] of schemas) registry.add(schema, { id });
  const { schemas: converted } = z.toJSONSchema(registry, {
    target: 'draft-2020-12',
    io,
    uri: (id) => `${COMPONENT_REF}${id}`,
  });
  return Object.fromEntries(
    Object.entries(converted).map(([id, { $id: _id, $schema: _schema, ...schema }]) => [id, schema]),
  );
}

/** A parameter's schema, written in place (query values are small: an enum, a number, a string). */
function inline(schema: z.ZodType): Record<string, unknown> {
  const { $schema: _schema, ...json } = z.toJSONSchema(schema, { target: 'draft-2020-12', io: 'input' });
  return json;
}

/** The groups whose role includes `needed`: its own and every role above it. */
function rolesGranting(needed: Role): Role[] {
  return ROLES.slice(ROLES.indexOf(needed));
}

function splitRouteKey(routeKey: string): { method: string; path: string } {
  const match = /^(GET|POST|PUT|PATCH|DELETE) (\/\S*)$/.exec(routeKey);
  if (!match) fail(routeKey, 'is not "METHOD /path" with one of GET, POST, PUT, PATCH, DELETE');
  return { method: match[1]!, path: match[2]! };
}

/** Operations are grouped by the first segment after `/api/v2`: robots, metrics, discover, openapi. */
function tagOf(path: string): string {
  return (path.split('/')[3] ?? 'api').replace(/\..*$/, '');
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function fail(routeKey: string, problem: string): never {
  throw new RouteContractError(`Route ${routeKey}: ${problem}.`);
}
