import { describe, expect, it } from 'vitest';
import {
  CreateDeploymentRequest,
  DEPLOYMENT_STATES,
  DeploymentStrategy,
  HOLD_REASONS,
  ReleaseVersion,
  ROBOT_UPDATE_STATES,
  type DeploymentState,
} from '../../../schemas/index.js';
import { permissionsFor } from '../../../dashboard/src/views/bulk.js';
import {
  actionConfirmation,
  appendPage,
  availableActions,
  buildCreateRequest,
  defaultDeployForm,
  DEPLOYMENT_STATE_OPTIONS,
  deploySummary,
  deployTargetOf,
  describeTargets,
  heldByReason,
  HOLD_REASON_OPTIONS,
  HOLD_REASON_TEXT,
  isActionValid,
  isFinal,
  mergeFirstPage,
  planBatches,
  progressOf,
  releaseVersionProblem,
  ROBOT_UPDATE_STATE_OPTIONS,
  sortDeploymentRobots,
  STRATEGY_FIELDS,
  strategyDefaults,
  targetEstimate,
  type DeployForm,
} from '../../../dashboard/src/views/deployment-model.js';
import { softwareOf, updateText, versionSortValue } from '../../../dashboard/src/views/software-model.js';
import { deploymentRobot, deploymentView, robotView } from './fixtures.js';

const withState = (state: DeploymentState, overrides: Parameters<typeof deploymentView>[0] = {}) => deploymentView({ state, ...overrides });

describe('deployments: the mirrors of schemas/deployments.ts', () => {
  it('name the same states and hold reasons', () => {
    expect([...DEPLOYMENT_STATE_OPTIONS]).toEqual([...DEPLOYMENT_STATES]);
    expect([...ROBOT_UPDATE_STATE_OPTIONS]).toEqual([...ROBOT_UPDATE_STATES]);
    expect([...HOLD_REASON_OPTIONS]).toEqual([...HOLD_REASONS]);
    expect(Object.keys(HOLD_REASON_TEXT).sort()).toEqual([...HOLD_REASONS].sort());
  });

  it('have the strategy’s fields, defaults and bounds', () => {
    expect(STRATEGY_FIELDS.map((f) => f.key).sort()).toEqual(Object.keys(DeploymentStrategy.shape).sort());
    expect(strategyDefaults()).toEqual(DeploymentStrategy.parse({}));
    const partial = DeploymentStrategy.partial();
    for (const field of STRATEGY_FIELDS) {
      expect(partial.safeParse({ [field.key]: field.min }).success, `${field.key} = min`).toBe(true);
      expect(partial.safeParse({ [field.key]: field.max }).success, `${field.key} = max`).toBe(true);
      expect(partial.safeParse({ [field.key]: field.min - 0.01 }).success, `${field.key} below min`).toBe(false);
      expect(partial.safeParse({ [field.key]: field.max + 0.01 }).success, `${field.key} above max`).toBe(false);
      if (field.integer) expect(partial.safeParse({ [field.key]: field.min + 0.5 }).success, `${field.key} fractional`).toBe(false);
    }
  });

  it('judge a release version as ReleaseVersion does', () => {
    const samples = ['1.4.0', '2026.12.01-rc1', 'v1+build.7', 'a', 'x'.repeat(64), 'x'.repeat(65), '', '.hidden', '-1', '1..2', 'a/b', '1.0 beta', 'ü1'];
    for (const sample of samples) {
      expect(releaseVersionProblem(sample) === null, JSON.stringify(sample)).toBe(ReleaseVersion.safeParse(sample).success);
    }
  });
});

describe('deployments: actions', () => {
  it('are valid only in the states that allow them', () => {
    const table = DEPLOYMENT_STATES.map((state) => {
      const d = withState(state);
      return [state, (['pause', 'resume', 'cancel', 'rollback'] as const).filter((action) => isActionValid(d, action))];
    });
    expect(table).toEqual([
      ['running', ['pause', 'cancel']],
      ['paused', ['resume', 'cancel']],
      ['completed', ['rollback']],
      // The abort rolls back by itself (functions/domain/deployment.ts: DeploymentAborted requests the rollback).
      ['aborted', []],
      ['canceled', ['rollback']],
    ]);
    expect(DEPLOYMENT_STATES.filter(isFinal)).toEqual(['completed', 'aborted', 'canceled']);
  });

  it('roll back only a deploy that updated robots and was not rolled back yet', () => {
    const counts = deploymentView().counts;
    expect(isActionValid(withState('completed', { counts: { ...counts, succeeded: 0 } }), 'rollback')).toBe(false);
    expect(isActionValid(withState('canceled', { rollbackDeploymentId: 'dep-01JE0000000000000000000001' }), 'rollback')).toBe(false);
    expect(isActionValid(withState('completed', { kind: 'rollback' }), 'rollback')).toBe(false);
  });

  it('are offered to engineers and admins only', () => {
    const running = withState('running');
    expect(availableActions(running, permissionsFor('operator').deploy)).toEqual([]);
    expect(availableActions(running, permissionsFor(null).deploy)).toEqual([]);
    expect(availableActions(running, permissionsFor('engineer').deploy)).toEqual(['pause', 'cancel']);
    expect(availableActions(withState('paused'), permissionsFor('admin').deploy)).toEqual(['resume', 'cancel']);
    expect(availableActions(withState('completed'), permissionsFor('operator').deploy)).toEqual([]);
    expect(availableActions(withState('completed'), permissionsFor('admin').deploy)).toEqual(['rollback']);
  });

  it('each confirmation states what happens, with the counts', () => {
    const counts = { targeted: 30, held: 2, pending: 10, inProgress: 3, succeeded: 12, failed: 2, rolledBack: 0, canceled: 1 };
    const completed = withState('completed', { counts });
    expect(actionConfirmation(completed, 'rollback')).toMatchObject({
      effect: 'Roll back 12 robots to their previous version. The rollback is a deployment of its own (one per previous version).',
      button: 'Roll back 12 robots',
    });
    expect(actionConfirmation(withState('running', { counts }), 'cancel').effect).toBe(
      "The open batch's job is canceled (robots mid-install finish) and no further batch opens: up to 13 robots not updated yet keep their version. " +
        'The 12 robots already on 1.1.0 stay on it; roll it back afterwards to undo them.',
    );
    expect(actionConfirmation(withState('running', { counts }), 'pause').effect).toBe(
      'No further batch opens until it is resumed (the open batch carries on); 13 robots not finished yet.',
    );
    expect(actionConfirmation(withState('paused', { counts }), 'resume').effect).toBe('The next batch opens once the open one is done: 13 robots still to update.');
    expect(actionConfirmation(withState('completed', { counts: { ...counts, succeeded: 1 } }), 'rollback').button).toBe('Roll back 1 robot');
  });
});

describe('deployments: what the pages show', () => {
  it('progress counts the robots to update (held ones are not) and every way of finishing', () => {
    const counts = { targeted: 30, held: 2, pending: 10, inProgress: 3, succeeded: 10, failed: 2, rolledBack: 2, canceled: 1 };
    expect(progressOf(deploymentView({ counts }))).toEqual({ total: 28, done: 15, succeeded: 10, failed: 2, percent: 53 });
    expect(progressOf(deploymentView({ counts: { ...counts, targeted: 2, pending: 0, inProgress: 0, succeeded: 0, failed: 0, rolledBack: 0, canceled: 0 } })).percent).toBe(100);
  });

  it('describes targets, groups held robots by reason, lists robots by batch with held last', () => {
    expect(describeTargets({ robotIds: ['a', 'b'] })).toBe('2 robots (a, b)');
    expect(describeTargets({ robotIds: ['a', 'b', 'c', 'd', 'e'] })).toBe('5 robots (a, b, c and 2 more)');
    expect(describeTargets({ filter: {} })).toBe('the whole fleet');
    expect(describeTargets({ filter: { model: 'xle', lifecycle: 'ready' } })).toBe('every xle robot in lifecycle ready');
    expect(describeTargets({ filter: { lifecycle: 'active' } })).toBe('every robot in lifecycle active');
    const robots = [
      deploymentRobot('r4', { batch: null, state: 'held', reason: 'offline' }),
      deploymentRobot('r3', { batch: 1 }),
      deploymentRobot('r2', { batch: null, state: 'held', reason: 'teleoperated' }),
      deploymentRobot('r1', { batch: null, state: 'held', reason: 'offline' }),
      deploymentRobot('r0', { batch: 0 }),
    ];
    expect(heldByReason(robots)).toEqual([
      { reason: 'offline', robotIds: ['r4', 'r1'] },
      { reason: 'teleoperated', robotIds: ['r2'] },
    ]);
    expect(sortDeploymentRobots(robots).map((r) => r.robotId)).toEqual(['r0', 'r3', 'r1', 'r2', 'r4']);
  });

  it('the list merges a re-read first page by id and appends older pages once', () => {
    const a = deploymentView({ deploymentId: 'dep-01JE000000000000000000000A' });
    const b = deploymentView({ deploymentId: 'dep-01JE000000000000000000000B' });
    const c = deploymentView({ deploymentId: 'dep-01JE000000000000000000000C' });
    const bDone = { ...b, state: 'completed' as const };
    expect(mergeFirstPage([b, a], [c, bDone]).map((d) => [d.deploymentId.slice(-1), d.state])).toEqual([
      ['C', 'running'],
      ['B', 'completed'],
      ['A', 'running'],
    ]);
    expect(appendPage([c, b], [b, a]).map((d) => d.deploymentId.slice(-1))).toEqual(['C', 'B', 'A']);
  });

  it('reads the robot’s software, with the open update, and sorts unknown versions last', () => {
    const updating = robotView('lekiwi-S1', {
      software: { version: '1.0.0', update: { deploymentId: 'dep-01JE0000000000000000000000', version: '1.1.0', state: 'deferred', since: '2026-12-01T10:00:00Z' } },
    });
    expect(softwareOf(updating)?.version).toBe('1.0.0');
    expect(updateText(softwareOf(updating))).toBe('updating to 1.1.0 (deferred while teleoperated)');
    expect(updateText(softwareOf(robotView('lekiwi-S2')))).toBeNull();
    // A view from an API without the field (an older server on the live feed): unknown, not an error.
    const { software: _dropped, ...older } = robotView('lekiwi-S3');
    expect(softwareOf(older as never)).toBeNull();
    expect(versionSortValue(older as never)).toBeUndefined();
  });
});

describe('deployments: the deploy dialog’s request', () => {
  const form = (overrides: Partial<DeployForm> = {}): DeployForm => ({ ...defaultDeployForm(), release: '1.4.0', ...overrides });

  it('from the selection: the robot ids, and the whole strategy with the API’s defaults untouched', () => {
    const route = { selection: ['lekiwi-A', 'xle-B', 'lekiwi-A'], filters: { model: 'xle' } };
    const target = deployTargetOf(route);
    expect(target).toEqual({ kind: 'selection', robotIds: ['lekiwi-A', 'xle-B'] });
    const built = buildCreateRequest(form(), target);
    expect(built).toEqual({
      ok: true,
      request: { release: '1.4.0', targets: { robotIds: ['lekiwi-A', 'xle-B'] }, strategy: DeploymentStrategy.parse({}) },
    });
    if (!built.ok) throw new Error('refused');
    expect(CreateDeploymentRequest.parse(built.request)).toEqual(built.request);
  });

  it('from the filter: only model and lifecycle, the edited strategy and the note', () => {
    const target = deployTargetOf({ selection: [], filters: { model: 'lekiwi', lifecycle: 'ready' } });
    const strategy = { ...defaultDeployForm().strategy, canary: '2', batchSize: ' 10 ', batchGrowthFactor: '2', retries: '1' };
    const built = buildCreateRequest(form({ strategy, note: '  fixes the arm  ', release: ' 2026.12.01-rc1 ' }), target);
    if (!built.ok) throw new Error(JSON.stringify(built.problems));
    expect(built.request).toEqual({
      release: '2026.12.01-rc1',
      targets: { filter: { model: 'lekiwi', lifecycle: 'ready' } },
      strategy: { ...DeploymentStrategy.parse({}), canary: 2, batchSize: 10, batchGrowthFactor: 2, retries: 1 },
      note: 'fixes the arm',
    });
    expect(CreateDeploymentRequest.parse(built.request)).toEqual(built.request);
    // No filter and no selection: the whole fleet, which the schema accepts as an empty filter.
    const whole = buildCreateRequest(form(), deployTargetOf({ selection: [], filters: {} }));
    expect(whole.ok && whole.request.targets).toEqual({ filter: {} });
    expect(whole.ok && CreateDeploymentRequest.safeParse(whole.request).success).toBe(true);
  });

  it('refuses a bad version, strategy values out of bounds and an unknown model, naming each field', () => {
    const strategy = { ...defaultDeployForm().strategy, batchSize: '0', abortThresholdPercent: '120', retries: '1.5', robotTimeoutMinutes: '' };
    const built = buildCreateRequest(form({ release: '1..2', strategy }), { kind: 'filter', model: 'robodog' });
    expect(built.ok).toBe(false);
    if (built.ok) return;
    expect(Object.keys(built.problems).sort()).toEqual(['abortThresholdPercent', 'batchSize', 'release', 'retries', 'robotTimeoutMinutes', 'targets']);
    expect(built.problems.batchSize).toBe('Batch size: from 1 to 1000.');
    expect(built.problems.retries).toBe('Retries: a whole number.');
    expect(built.problems.robotTimeoutMinutes).toBe('Timeout per robot: required.');
    expect(buildCreateRequest(form({ release: '' }), { kind: 'selection', robotIds: [] })).toMatchObject({
      ok: false,
      problems: { release: 'Name the release version to deploy.', targets: 'Select at least one robot.' },
    });
  });

  it('estimates the robots a target means now and the batches, in the summary line', () => {
    const fleet = [
      robotView('lekiwi-A'),
      robotView('lekiwi-B', { deployable: false }),
      robotView('xle-C'),
      robotView('lekiwi-D', { lifecycle: 'maintenance' }),
    ];
    expect(targetEstimate(fleet, { kind: 'filter', model: 'lekiwi', lifecycle: 'ready' })).toEqual({ matched: 2, deployable: 1, unknown: 0 });
    expect(targetEstimate(fleet, { kind: 'selection', robotIds: ['xle-C', 'lekiwi-B', 'gone'] })).toEqual({ matched: 2, deployable: 1, unknown: 1 });
    expect(planBatches(20, { canary: 2, batchSize: 5 })).toEqual([2, 5, 5, 5, 3]);
    expect(planBatches(40, { canary: 1, batchSize: 5, batchGrowthFactor: 2 })).toEqual([1, 5, 10, 20, 4]);
    expect(planBatches(0, { canary: 1, batchSize: 5 })).toEqual([]);
    expect(planBatches(7, { canary: 0, batchSize: 5 })).toEqual([5, 2]);
    const built = buildCreateRequest(form(), { kind: 'selection', robotIds: ['a'] });
    if (!built.ok) throw new Error('refused');
    expect(deploySummary(built.request, { matched: 12, deployable: 10 }, 'the 12 selected robots')).toBe(
      'Deploy 1.4.0 to the 12 selected robots: 10 of 12 robots deployable now (2 held back), in about 3 batches (canary of 1, then batches of 5; ' +
        'abort when 20 % of finished robots failed (once 5 finished); 30 min per robot, 0 retries; health check 60 s).',
    );
  });
});
