import { z } from 'zod';
import {
  CreateDeploymentRequest,
  DeploymentActionRequest,
  DeploymentId,
  DeploymentSummaryPage,
  DeploymentView,
  ListDeploymentsQuery,
} from '../../../schemas/deployments.js';
import { DeploymentTransitionRejected } from '../../domain/deployment.js';
import { fieldProblems } from '../../platform/validation.js';
import { createDeployment, NoDeployableRobot, ReleaseNotFound } from '../deployments/create-deployment.js';
import { actOnDeployment, type DeploymentAction } from '../deployments/deployment-actions.js';
import { toDeploymentSummary, toDeploymentView } from '../deployments/deployment-view.js';
import { DeploymentNotFound, type DeploymentDependencies } from '../deployments/orchestrator.js';
import { idempotentRequest, IdempotencyKeyReused } from '../idempotency.js';
import { HttpError, invalidRequest } from './errors.js';
import { allValid, IdempotencyKey, idempotencyKey, noQuery, parseBody, parseQuery, type ApiRequest } from './request.js';
import type { Route, RouteDependencies } from './routes.js';

/**
 * `/api/v2/deployments` (issue 12): create (engineer; an Idempotency-Key makes a retry answer the deployment the
 * first call created), list newest first, one with every robot, and pause/resume/cancel/rollback (engineer). Errors
 * name the problem: the unknown release or deployment (404), no deployable robot with the held ones listed, an action
 * the deployment's state does not allow (409).
 */

const deploymentIdParameter = (request: ApiRequest): string => {
  const parsed = DeploymentId.safeParse(request.pathParameters.id);
  if (!parsed.success) throw invalidRequest(fieldProblems(parsed.error, 'id').map((problem) => ({ ...problem, field: 'id' })));
  return parsed.data;
};

function deploymentsOf(deps: RouteDependencies): DeploymentDependencies {
  if (!deps.deployments) throw new HttpError(503, 'DEPLOYMENTS_UNAVAILABLE', 'Deployments are not set up in this environment (no deployments table or IoT Jobs).');
  return deps.deployments;
}

/** The deployment layer's errors as answers; anything else passes on. */
function answerOf(error: unknown): never {
  if (error instanceof ReleaseNotFound) throw new HttpError(404, 'RELEASE_NOT_FOUND', error.message, { release: error.version });
  if (error instanceof DeploymentNotFound) throw new HttpError(404, 'DEPLOYMENT_NOT_FOUND', error.message);
  if (error instanceof NoDeployableRobot) throw new HttpError(409, 'NO_DEPLOYABLE_ROBOT', error.message, { held: error.held });
  if (error instanceof DeploymentTransitionRejected) {
    throw new HttpError(409, 'DEPLOYMENT_STATE_CONFLICT', error.message, { action: error.action, state: error.state });
  }
  throw error;
}

async function viewOf(deps: DeploymentDependencies, deploymentId: string): Promise<DeploymentView> {
  const stored = await deps.store.read(deploymentId);
  if (!stored) throw new DeploymentNotFound(deploymentId);
  return toDeploymentView(stored.head, await deps.store.listRobots(deploymentId));
}

async function create(request: ApiRequest, routeDeps: RouteDependencies): Promise<DeploymentView> {
  const [key, body] = allValid(
    () => idempotencyKey(request),
    () => parseBody(request, CreateDeploymentRequest),
    () => noQuery(request),
  );
  const deps = deploymentsOf(routeDeps);
  try {
    let deploymentId = deps.newDeploymentId();
    if (key !== undefined) {
      const { fingerprint } = idempotentRequest({ callerId: request.caller.id, key, route: request.routeKey, robotId: '', body });
      const claim = await deps.store.claimKey({ callerId: request.caller.id, key, fingerprint, deploymentId });
      if (!claim.claimed) {
        if (claim.fingerprint !== fingerprint) throw new IdempotencyKeyReused(key, ['body'], request.routeKey);
        deploymentId = claim.deploymentId;
        // Created by the first call (or half-created by it: finishing is what this call does).
        if (await deps.store.read(deploymentId)) return await viewOf(deps, deploymentId);
      }
    }
    await createDeployment(deps, body, request.caller.id, deploymentId);
    return await viewOf(deps, deploymentId);
  } catch (error) {
    return answerOf(error);
  }
}

function action(name: DeploymentAction) {
  return async (request: ApiRequest, routeDeps: RouteDependencies): Promise<DeploymentView> => {
    const [deploymentId, body] = allValid(
      () => deploymentIdParameter(request),
      () => parseBody(request, DeploymentActionRequest),
      () => noQuery(request),
    );
    const deps = deploymentsOf(routeDeps);
    try {
      await actOnDeployment(deps, deploymentId, name, request.caller.id, body.reason ?? null);
      return await viewOf(deps, deploymentId);
    } catch (error) {
      return answerOf(error);
    }
  };
}

const ACTION_SUMMARIES: Readonly<Record<DeploymentAction, string>> = {
  pause: 'Pause a running deployment: no further batch opens (the open batch carries on)',
  resume: 'Resume a paused deployment: the next batch opens once the open one is done',
  cancel: 'Cancel a running or paused deployment: the open job is canceled (robots mid-install finish), no further batch opens',
  rollback:
    'Roll back a completed, aborted or canceled deployment: every robot it updated goes back to the version it ran before (one rollback deployment per version)',
};

const actionRoute = (name: DeploymentAction) =>
  ({
    operationId: `${name}Deployment`,
    summary: ACTION_SUMMARIES[name],
    role: 'engineer',
    pathParameters: { id: DeploymentId },
    body: DeploymentActionRequest,
    response: DeploymentView,
    errors: { 404: ['DEPLOYMENT_NOT_FOUND'], 409: ['DEPLOYMENT_STATE_CONFLICT'], 503: ['DEPLOYMENTS_UNAVAILABLE'] },
    handle: action(name),
  }) as const satisfies Route;

export const DEPLOYMENT_ROUTES = {
  /** 202: the deployment is recorded and its first batch's job created; it rolls out from here. */
  'POST /api/v2/deployments': {
    operationId: 'createDeployment',
    summary:
      'Deploy a release to robots (ids or a filter, resolved now): undeployable robots are held back and listed; a canary batch, then rolling batches, each an IoT job',
    role: 'engineer',
    status: 202,
    headers: {
      'Idempotency-Key': {
        schema: IdempotencyKey.optional(),
        description: 'Makes the request safe to retry: a repeat with the same key and body answers with the deployment the first created; the same key with another body is a 422.',
      },
    },
    body: CreateDeploymentRequest,
    response: DeploymentView,
    errors: { 404: ['RELEASE_NOT_FOUND'], 409: ['NO_DEPLOYABLE_ROBOT'], 422: ['IDEMPOTENCY_KEY_REUSED'], 503: ['DEPLOYMENTS_UNAVAILABLE'] },
    handle: create,
  },
  'GET /api/v2/deployments': {
    operationId: 'listDeployments',
    summary: 'List deployments, newest first, a page at a time (follow nextCursor); without the per-robot lists',
    role: 'operator',
    query: ListDeploymentsQuery,
    response: DeploymentSummaryPage,
    errors: { 503: ['DEPLOYMENTS_UNAVAILABLE'] },
    handle: async (request, routeDeps) => {
      const query = parseQuery(request, ListDeploymentsQuery);
      const page = await deploymentsOf(routeDeps).store.list({ limit: query.limit, cursor: query.cursor });
      return { items: page.items.map(toDeploymentSummary), nextCursor: page.nextCursor } satisfies z.infer<typeof DeploymentSummaryPage>;
    },
  },
  'GET /api/v2/deployments/{id}': {
    operationId: 'getDeployment',
    summary: 'One deployment: state, counts, batches, and every targeted robot with its state, reason and timing',
    role: 'operator',
    pathParameters: { id: DeploymentId },
    response: DeploymentView,
    errors: { 404: ['DEPLOYMENT_NOT_FOUND'], 503: ['DEPLOYMENTS_UNAVAILABLE'] },
    handle: async (request, routeDeps) => {
      const [deploymentId] = allValid(
        () => deploymentIdParameter(request),
        () => noQuery(request),
      );
      try {
        return await viewOf(deploymentsOf(routeDeps), deploymentId);
      } catch (error) {
        return answerOf(error);
      }
    },
  },
  'POST /api/v2/deployments/{id}/pause': actionRoute('pause'),
  'POST /api/v2/deployments/{id}/resume': actionRoute('resume'),
  'POST /api/v2/deployments/{id}/cancel': actionRoute('cancel'),
  'POST /api/v2/deployments/{id}/rollback': actionRoute('rollback'),
} as const satisfies Record<string, Route>;
