import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoDeploymentStore } from '../../functions/adapters/dynamo-deployments.js';
import { newDeploymentId } from '../../functions/app/deployments/deployment-ids.js';
import type { DeploymentDependencies } from '../../functions/app/deployments/orchestrator.js';
import { onRobotUpdate } from '../../functions/app/deployments/on-robot-update.js';
import { createHttpApi } from '../../functions/app/http/http-api.js';
import { ROUTE_KEYS } from '../../functions/app/http/routes.js';
import { fold, initialRobotState } from '../../functions/domain/robot-state.js';
import { toRobotView } from '../../functions/domain/robot-view.js';
import { toHttpApiEvent, type PlainHttpRequest } from '../../local/http-api-event.js';
import { startLocalIotJobs, type LocalIotJobs } from '../../local/iot-jobs/jobs-service.js';
import { DeploymentSummaryPage, DeploymentView, type ReleaseSummary } from '../../schemas/deployments.js';
import type { RobotView } from '../../schemas/index.js';
import { HTTP_ROUTE_KEYS } from '../../schemas/routes.js';
import { createTestDeploymentsTable } from '../support/dynamo.js';
import { InMemoryFleetQueries, RecordingCommandChannel } from '../support/fleet-queries-fake.js';
import { InMemoryEventLog } from '../support/in-memory-event-log.js';
import { robotHistory } from '../support/read-model-seed.js';

/**
 * /api/v2/deployments through the HTTP layer (auth, roles, validation, errors) onto the real deployment store on
 * DynamoDB Local and the local IoT Jobs; the read side is in memory.
 */

let table: Awaited<ReturnType<typeof createTestDeploymentsTable>>;
let jobs: LocalIotJobs;
let handle: ReturnType<typeof createHttpApi>;
let deps: DeploymentDependencies;

const RELEASE: ReleaseSummary = { version: '2.0.0', manifestSha256: 'c'.repeat(64), fileCount: 1, totalBytes: 10, createdAt: '2026-12-01T09:00:00.000Z' };
const ONLINE = ['lekiwi-H0001', 'lekiwi-H0002', 'lekiwi-H0003'];

class Fleet extends InMemoryFleetQueries {
  constructor(private readonly views: Map<string, RobotView>) {
    super([]);
  }
  override async getRobot(robotId: string) {
    return this.views.get(robotId) ?? null;
  }
  override async listRobots() {
    return { items: [...this.views.values()], nextCursor: null };
  }
}

beforeAll(async () => {
  table = await createTestDeploymentsTable();
  jobs = await startLocalIotJobs({ publish: async () => {}, log: () => {} });
  const views = new Map(
    [...ONLINE, 'lekiwi-H0009'].map((robotId) => {
      const events = robotHistory(robotId, { online: robotId !== 'lekiwi-H0009' });
      return [robotId, { ...toRobotView(fold(initialRobotState(robotId), events), events.length, null), software: { version: '1.0.0', update: null } } as RobotView];
    }),
  );
  deps = {
    store: new DynamoDeploymentStore({ client: table.client, tableName: table.tableName }),
    jobs,
    releases: { getRelease: async (version) => (version === RELEASE.version ? { summary: RELEASE } : null) },
    queueUpdate: async () => {},
    fleet: new Fleet(views),
    now: () => new Date('2026-12-01T10:00:00.000Z'),
    newDeploymentId: () => newDeploymentId(new Date()),
  };
  handle = createHttpApi({
    queries: new InMemoryFleetQueries([]),
    eventLog: new InMemoryEventLog(),
    robotCommands: new RecordingCommandChannel(),
    now: deps.now,
    newEventId: () => 'e1',
    deployments: deps,
  });
});

afterAll(async () => {
  await jobs?.stop();
  await table?.drop();
});

const ENGINEER = { username: 'erin', 'cognito:groups': '[engineer]' };
const OPERATOR = { username: 'otto', 'cognito:groups': '[operator]' };

async function call(method: 'GET' | 'POST', path: string, options: { claims?: Record<string, string>; body?: unknown; headers?: Record<string, string> } = {}) {
  const request: PlainHttpRequest = {
    method,
    path,
    ...(options.body !== undefined ? { body: JSON.stringify(options.body), headers: { 'content-type': 'application/json', ...options.headers } } : { headers: options.headers ?? {} }),
  };
  const result = await handle(toHttpApiEvent(request, { routeKeys: ROUTE_KEYS, claims: options.claims ?? ENGINEER }));
  return { status: result.statusCode, body: JSON.parse(result.body) };
}

describe('/api/v2/deployments', () => {
  it('declares the deployment routes in the shared route keys', () => {
    for (const key of ['POST /api/v2/deployments', 'GET /api/v2/deployments', 'GET /api/v2/deployments/{id}', 'POST /api/v2/deployments/{id}/rollback']) {
      expect(HTTP_ROUTE_KEYS).toContain(key);
    }
  });

  it('creates a deployment (202) with the held robots shown, lists it, and shows it with every robot', async () => {
    const created = await call('POST', '/api/v2/deployments', {
      body: { release: '2.0.0', targets: { robotIds: [...ONLINE, 'lekiwi-H0009'] }, strategy: { canary: 1, batchSize: 2 }, note: 'first' },
    });
    expect(created.status).toBe(202);
    const view = DeploymentView.parse(created.body);
    expect(view).toMatchObject({ kind: 'deploy', state: 'running', createdBy: 'erin', note: 'first', release: { version: '2.0.0' } });
    expect(view.robots.find((r) => r.robotId === 'lekiwi-H0009')).toMatchObject({ state: 'held', reason: 'offline' });
    expect((await jobs.describeJob(`${view.deploymentId}-b0`))?.status).toBe('IN_PROGRESS');

    const list = await call('GET', '/api/v2/deployments', { claims: OPERATOR });
    expect(list.status).toBe(200);
    const page = DeploymentSummaryPage.parse(list.body);
    expect(page.items[0]?.deploymentId).toBe(view.deploymentId);
    expect(page.items[0]).not.toHaveProperty('robots');

    const one = await call('GET', `/api/v2/deployments/${view.deploymentId}`, { claims: OPERATOR });
    expect(one.status).toBe(200);
    expect(DeploymentView.parse(one.body).robots).toHaveLength(4);
  });

  it('names an unknown release (404), no deployable robot with the held list (409), and an unknown deployment (404)', async () => {
    const release = await call('POST', '/api/v2/deployments', { body: { release: '9.9.9', targets: { robotIds: ONLINE } } });
    expect(release.status).toBe(404);
    expect(release.body.error).toMatchObject({ code: 'RELEASE_NOT_FOUND', details: { release: '9.9.9' } });
    expect(release.body.error.message).toContain('9.9.9');

    const none = await call('POST', '/api/v2/deployments', { body: { release: '2.0.0', targets: { robotIds: ['lekiwi-H0009', 'lekiwi-NOPE1'] } } });
    expect(none.status).toBe(409);
    expect(none.body.error.code).toBe('NO_DEPLOYABLE_ROBOT');
    expect(none.body.error.details.held).toEqual([
      { robotId: 'lekiwi-H0009', reason: 'offline' },
      { robotId: 'lekiwi-NOPE1', reason: 'unknown' },
    ]);

    const missing = await call('GET', '/api/v2/deployments/dep-01KBZZZZZZZZZZZZZZZZZZZZZZ', { claims: OPERATOR });
    expect(missing.status).toBe(404);
    expect(missing.body.error.code).toBe('DEPLOYMENT_NOT_FOUND');
    const bad = await call('GET', '/api/v2/deployments/not-an-id', { claims: OPERATOR });
    expect(bad.status).toBe(400);
  });

  it('lets only engineers create and act (operators get 403)', async () => {
    const denied = await call('POST', '/api/v2/deployments', { claims: OPERATOR, body: { release: '2.0.0', targets: { robotIds: ONLINE } } });
    expect(denied.status).toBe(403);
    expect(denied.body.error.details.requiredRole).toBe('engineer');
  });

  it('pauses, refuses a second pause and resuming a completed deployment with 409, cancels, rolls back', async () => {
    const created = DeploymentView.parse((await call('POST', '/api/v2/deployments', { body: { release: '2.0.0', targets: { robotIds: ONLINE.slice(0, 1) }, strategy: { canary: 0 } } })).body);
    const id = created.deploymentId;
    expect((await call('POST', `/api/v2/deployments/${id}/pause`, { body: { reason: 'looking' } })).body.state).toBe('paused');
    const again = await call('POST', `/api/v2/deployments/${id}/pause`);
    expect(again.status).toBe(409);
    expect(again.body.error).toMatchObject({ code: 'DEPLOYMENT_STATE_CONFLICT', details: { action: 'pause', state: 'paused' } });
    expect((await call('POST', `/api/v2/deployments/${id}/resume`)).body.state).toBe('running');
    // The robot succeeds: the deployment completes.
    await onRobotUpdate(deps, {
      eventId: 'u1',
      robotId: ONLINE[0]!,
      at: '2026-12-01T10:03:00.000Z',
      version: 1,
      type: 'RobotUpdateSucceeded',
      data: { deploymentId: id, jobId: `${id}-b0`, version: '2.0.0', kind: 'deploy', fromVersion: '1.0.0', filesFetched: 1, bytesFetched: 10, durationMs: 5 },
    });
    const resume = await call('POST', `/api/v2/deployments/${id}/resume`);
    expect(resume.status).toBe(409);
    expect(resume.body.error.message).toMatch(/Cannot resume deployment dep-.*: it is completed/);
    expect((await call('POST', `/api/v2/deployments/${id}/cancel`)).status).toBe(409);
    // Rolling back a completed deployment whose previous release is gone from the store: the record says so.
    const rolled = await call('POST', `/api/v2/deployments/${id}/rollback`, { body: { reason: 'regression' } });
    expect(rolled.status).toBe(200);
    expect(rolled.body.rollback).toMatchObject({ requested: true, skipped: 1 });
    expect(rolled.body.rollback.skippedReason).toContain('1.0.0');
  });

  it('answers a retry under the same Idempotency-Key with the same deployment, and refuses the key for another body (422)', async () => {
    const body = { release: '2.0.0', targets: { robotIds: ONLINE.slice(1) } };
    const headers = { 'Idempotency-Key': 'a1b2c3d4-0000-4000-8000-000000000001' };
    const first = await call('POST', '/api/v2/deployments', { body, headers });
    const second = await call('POST', '/api/v2/deployments', { body, headers });
    expect(first.status).toBe(202);
    expect(second.body.deploymentId).toBe(first.body.deploymentId);
    const other = await call('POST', '/api/v2/deployments', { body: { ...body, note: 'different' }, headers });
    expect(other.status).toBe(422);
    expect(other.body.error.code).toBe('IDEMPOTENCY_KEY_REUSED');
  });

  it('refuses unknown body fields and a bad strategy with 400 naming the field', async () => {
    const answer = await call('POST', '/api/v2/deployments', { body: { release: '2.0.0', targets: { robotIds: ONLINE }, strategy: { canary: -1 }, extra: 1 } });
    expect(answer.status).toBe(400);
    expect(JSON.stringify(answer.body.error.details)).toContain('strategy');
  });
});
