import { readFile } from 'node:fs/promises';
import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { ROLES, RobotId, RobotView } from '../../schemas/index.js';
import { openApiDocument, RouteContractError, type RouteContract } from '../../schemas/openapi.js';
import { createHttpApi } from '../../functions/app/http/http-api.js';
import { apiDocument, ROUTE_KEYS, ROUTES } from '../../functions/app/http/routes.js';
import { hasRole } from '../../functions/platform/auth.js';
import { toHttpApiEvent } from '../../local/http-api-event.js';
import { InMemoryEventLog } from '../support/in-memory-event-log.js';

/** The document as it travels: JSON, with nothing undefined left in it. */
const document = JSON.parse(JSON.stringify(apiDocument())) as any;

async function openApiProblems(candidate: unknown): Promise<unknown> {
  const validator = new Validator();
  const result = await validator.validate(candidate as Parameters<Validator['validate']>[0]);
  return result.valid ? null : result.errors;
}

const route = (contract: Partial<RouteContract> = {}): RouteContract => ({
  operationId: 'getRobot',
  summary: 'One robot',
  role: 'operator',
  pathParameters: { id: RobotId },
  response: RobotView,
  ...contract,
});

describe('the OpenAPI document of /api/v2', () => {
  it('is valid OpenAPI 3.1, as checked against the specification’s own schema', async () => {
    expect(document.openapi).toMatch(/^3\.1\./);
    expect(await openApiProblems(document)).toBeNull();
  });

  it('would be caught by that check if it were malformed', async () => {
    const broken = structuredClone(document);
    broken.paths['/api/v2/robots'].get.responses = { ok: { description: 'not a status code' } };
    expect(await openApiProblems(broken)).not.toBeNull();
  });

  it('is committed as schemas/openapi.json and up to date (run npm run schemas:export)', async () => {
    const committed = JSON.parse(await readFile(new URL('../../schemas/openapi.json', import.meta.url), 'utf8'));
    expect(committed).toEqual(document);
  });

  it('has every route of the table, with its method, success status, path parameters and the roles that may call it', () => {
    const documented = Object.entries(document.paths as Record<string, Record<string, any>>).flatMap(([path, operations]) =>
      Object.keys(operations).map((method) => `${method.toUpperCase()} ${path}`),
    );
    expect(documented.sort()).toEqual(Object.keys(ROUTES).sort());

    for (const [routeKey, contract] of Object.entries(ROUTES) as [string, RouteContract][]) {
      const [method, path] = routeKey.split(' ') as [string, string];
      const operation = document.paths[path][method.toLowerCase()];
      expect(Object.keys(operation.responses), routeKey).toContain(String(contract.status ?? 200));
      const pathNames = [...path.matchAll(/\{(\w+)\}/g)].map(([, name]) => name);
      expect(operation.parameters.filter((p: any) => p.in === 'path').map((p: any) => p.name), routeKey).toEqual(pathNames);
      // The same rule the handler enforces (functions/platform/auth.ts), not a copy of the list.
      const granting = ROLES.filter((role) => hasRole([role], contract.role));
      expect(operation.security, routeKey).toEqual([{ cognito: granting }]);
      expect(operation.responses['401'], routeKey).toBeDefined();
      expect(operation.responses['403'], routeKey).toBeDefined();
    }
  });

  it('documents each query parameter a list route takes, and the Idempotency-Key of the commands', () => {
    const list = document.paths['/api/v2/robots'].get.parameters;
    expect(list.filter((p: any) => p.in === 'query').map((p: any) => [p.name, p.required])).toEqual([
      ['status', false],
      ['model', false],
      ['lifecycle', false],
      ['version', false],
      ['limit', false],
      ['cursor', false],
    ]);
    expect(list.find((p: any) => p.name === 'limit').schema).toMatchObject({ type: 'integer', minimum: 1, maximum: 500, default: 100 });
    const fail = document.paths['/api/v2/robots/{id}/fail'].post;
    expect(fail.parameters.find((p: any) => p.in === 'header')).toMatchObject({ name: 'Idempotency-Key', required: false });
    expect(fail.requestBody.content['application/json'].schema).toEqual({ $ref: '#/components/schemas/MarkFailedRequest' });
    expect(Object.keys(fail.responses)).toEqual(expect.arrayContaining(['200', '400', '404', '409', '422', '503']));
  });

  it('gives JSON Schemas that a draft 2020-12 validator compiles, and that hold the API to its word', () => {
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats.default(ajv);
    ajv.addSchema({ ...document, $id: 'https://lekiwi-heartbeat/openapi.json' });
    for (const name of Object.keys(document.components.schemas)) {
      expect(() => ajv.getSchema(`https://lekiwi-heartbeat/openapi.json#/components/schemas/${name}`), name).not.toThrow();
    }
    const apiError = ajv.getSchema(
      'https://lekiwi-heartbeat/openapi.json#/paths/~1api~1v2~1robots~1{id}/get/responses/404/content/application~1json/schema',
    )!;
    expect(apiError({ error: { code: 'ROBOT_NOT_FOUND', message: 'Robot xle-X1 is not known to the fleet.' } })).toBe(true);
    expect(apiError({ error: { code: 'NO_SUCH_CODE', message: 'an undocumented code' } })).toBe(false);
    expect(apiError({ message: 'not our error shape' })).toBe(false);
  });

  it('serves the same document it keeps: GET /api/v2/openapi.json answers it', async () => {
    const served = await ROUTES['GET /api/v2/openapi.json'].handle(
      { routeKey: 'GET /api/v2/openapi.json', caller: { id: 'olga', roles: ['operator'] }, pathParameters: {}, query: {}, headers: {}, body: undefined },
    );
    expect(JSON.parse(JSON.stringify(served))).toEqual(document);
  });
});

describe('openApiDocument refuses a route table it cannot document truthfully', () => {
  it('names the route and the path parameter that has no schema', () => {
    expect(() => openApiDocument({ 'GET /api/v2/robots/{id}': route({ pathParameters: {} }) })).toThrow(
      new RouteContractError('Route GET /api/v2/robots/{id}: no schema for path parameter {id}.'),
    );
  });

  it('names a path parameter schema the path does not have', () => {
    expect(() => openApiDocument({ 'GET /api/v2/robots': route() })).toThrow(/Route GET \/api\/v2\/robots: pathParameters id are not in the path/);
  });

  it('refuses an operationId used twice, a greedy parameter and a malformed route key', () => {
    expect(() =>
      openApiDocument({ 'GET /api/v2/robots/{id}': route(), 'POST /api/v2/robots/{id}': route() }),
    ).toThrow(/Route POST \/api\/v2\/robots\/\{id\}: operationId getRobot is used twice/);
    expect(() => openApiDocument({ 'GET /api/v2/{proxy+}': route({ pathParameters: { 'proxy+': z.string() } }) })).toThrow(
      /greedy path parameter \{proxy\+\}/,
    );
    expect(() => openApiDocument({ 'FETCH api/v2/robots': route({ pathParameters: {} }) })).toThrow(/is not "METHOD \/path"/);
  });

  it('refuses one schema used as both a request and a response body', () => {
    expect(() =>
      openApiDocument({ 'POST /api/v2/robots/{id}/echo': route({ operationId: 'echo', body: RobotView, response: RobotView }) }),
    ).toThrow(/RobotView is both a request and a response body/);
  });
});

describe('the handlers take exactly what the document says', () => {
  // Validation runs before any dependency is reached: a request that passes it meets a read side that is down (500).
  const down = () => Promise.reject(new Error('read side down'));
  const api = createHttpApi({
    queries: { listRobots: down, getRobot: down, listEvents: down, metrics: down, telemetryHistory: down },
    eventLog: new InMemoryEventLog(),
    robotCommands: { send: down },
    now: () => new Date('2026-11-22T10:00:00.000Z'),
    newEventId: () => 'evt-00000001',
  });
  const ADMIN = { username: 'ada', 'cognito:groups': '[admin]' };

  /** A value the parameter's documented schema accepts. */
  function validValue(schema: any): string {
    if (schema.enum) return String(schema.enum[0]);
    if (schema.format === 'date-time') return '2026-11-22T09:30:00.000Z';
    if (schema.type === 'integer' || schema.type === 'number') return String(schema.minimum ?? 1);
    if (schema.pattern === RobotId.toJSONSchema().pattern) return 'lekiwi-LK0001';
    return 'x'.repeat(schema.minLength ?? 1);
  }

  async function send(routeKey: string, query: Record<string, string>, body?: unknown) {
    const [method, template] = routeKey.split(' ') as [string, string];
    const parameters = document.paths[template][method.toLowerCase()].parameters as any[];
    const path = parameters
      .filter((p) => p.in === 'path')
      .reduce((built: string, p) => built.replace(`{${p.name}}`, validValue(p.schema)), template);
    const result = await api(
      toHttpApiEvent(
        { method, path, query, ...(body === undefined ? {} : { body: JSON.stringify(body) }) },
        { routeKeys: ROUTE_KEYS, claims: ADMIN },
      ),
    );
    const answer = JSON.parse(result.body);
    const fields = result.statusCode === 400 ? (answer.error.details as { field: string }[]).map((d) => d.field) : [];
    return { status: result.statusCode, fields };
  }

  it.each(Object.keys(ROUTES))('%s accepts each documented query parameter and refuses any other', async (routeKey) => {
    const [method, template] = routeKey.split(' ') as [string, string];
    const query = (document.paths[template][method.toLowerCase()].parameters as any[]).filter((p) => p.in === 'query');

    for (const parameter of query) {
      const answer = await send(routeKey, { [parameter.name]: validValue(parameter.schema) });
      expect(answer.fields, `${routeKey} ?${parameter.name}=`).not.toContain(parameter.name);
    }
    const undocumented = await send(routeKey, { undocumented: '1' });
    expect(undocumented.status).toBe(400);
    expect(undocumented.fields).toContain('undocumented');
  });

  it.each(Object.keys(ROUTES).filter((key) => key.startsWith('POST ')))('%s refuses a body field it does not document', async (routeKey) => {
    const answer = await send(routeKey, {}, { undocumented: 1 });
    expect(answer.status).toBe(400);
    expect(answer.fields).toContain('undocumented');
  });
});
