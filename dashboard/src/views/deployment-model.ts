import type {
  CreateDeploymentRequest,
  DeploymentRobotView,
  DeploymentState,
  DeploymentStrategy,
  DeploymentSummary,
  HoldReason,
  Lifecycle,
  RobotModel,
  RobotUpdateState,
  RobotView,
} from '../../../schemas/index.js';
import type { DeploymentAction } from '../contracts.js';
import { LIFECYCLE_OPTIONS, MODEL_OPTIONS } from './fleet-model.js';

/**
 * The deployments views' pure core (issue 12): which actions a deployment's state allows, what each does in words,
 * its progress, the deploy dialog's form and the request it builds, and the software a robot runs.
 *
 * Invariants:
 * - the constants below mirror schemas/deployments.ts (which imports zod and so stays out of the bundle); a unit test
 *   checks that they agree (states, hold reasons, strategy defaults and bounds, the release version's rule);
 * - an action is offered only when the deployment's state allows it, as functions/domain/deployment.ts decides
 *   (pause: running; resume: paused; cancel: running or paused; rollback: a completed or canceled deploy, not rolled
 *   back yet, that updated at least one robot — an aborted one is rolled back by the abort itself); the API still
 *   answers 409 to a transition that raced another user, and the page shows that answer as it is;
 * - buildCreateRequest either refuses with a problem per field or gives a request the API's schema accepts.
 */

export const DEPLOYMENT_STATE_OPTIONS = ['running', 'paused', 'completed', 'aborted', 'canceled'] as const satisfies readonly DeploymentState[];
export const ROBOT_UPDATE_STATE_OPTIONS = [
  'held',
  'pending',
  'queued',
  'deferred',
  'installing',
  'succeeded',
  'failed',
  'rolled-back',
  'canceled',
] as const satisfies readonly RobotUpdateState[];
export const HOLD_REASON_OPTIONS = [
  'teleoperated',
  'failed',
  'offline',
  'deploying',
  'unknown',
  'model-mismatch',
  'provisioning',
] as const satisfies readonly HoldReason[];

/** What each hold reason means to the engineer who sees a robot held back. */
export const HOLD_REASON_TEXT: Record<HoldReason, string> = {
  teleoperated: 'being teleoperated',
  failed: 'marked failed',
  offline: 'offline',
  deploying: 'already in another deployment',
  unknown: 'not known to the fleet',
  'model-mismatch': 'a model the release is not for',
  provisioning: 'still provisioning',
};

export const FINAL_STATES: readonly DeploymentState[] = ['completed', 'aborted', 'canceled'];

export function isFinal(state: DeploymentState): boolean {
  return FINAL_STATES.includes(state);
}

/** The deployment actions in the order the page shows them. */
export const DEPLOYMENT_ACTIONS: readonly DeploymentAction[] = ['pause', 'resume', 'cancel', 'rollback'];

/** The robots a rollback would put back: those the deployment updated. */
export function rollbackCount(deployment: DeploymentSummary): number {
  return deployment.counts.succeeded;
}

export function isActionValid(deployment: DeploymentSummary, action: DeploymentAction): boolean {
  switch (action) {
    case 'pause':
      return deployment.state === 'running';
    case 'resume':
      return deployment.state === 'paused';
    case 'cancel':
      return deployment.state === 'running' || deployment.state === 'paused';
    case 'rollback':
      return (
        deployment.kind === 'deploy' &&
        (deployment.state === 'completed' || deployment.state === 'canceled') &&
        deployment.rollbackDeploymentId === null &&
        rollbackCount(deployment) > 0
      );
  }
}

/** The actions the page offers: none without the permission, else those valid in the deployment's state. */
export function availableActions(deployment: DeploymentSummary, canDeploy: boolean): DeploymentAction[] {
  return canDeploy ? DEPLOYMENT_ACTIONS.filter((action) => isActionValid(deployment, action)) : [];
}

export const ACTION_VERB: Record<DeploymentAction, string> = { pause: 'Pause', resume: 'Resume', cancel: 'Cancel', rollback: 'Roll back' };

function robots(n: number): string {
  return n === 1 ? 'robot' : 'robots';
}

/** Robots not finished yet: waiting for their batch, queued, deferred or installing. */
export function notFinishedCount(deployment: DeploymentSummary): number {
  return deployment.counts.pending + deployment.counts.inProgress;
}

/** The confirmation of an action: a title naming it and a sentence stating what happens. */
export function actionConfirmation(deployment: DeploymentSummary, action: DeploymentAction): { title: string; effect: string; button: string } {
  const version = deployment.release.version;
  const open = notFinishedCount(deployment);
  const updated = rollbackCount(deployment);
  switch (action) {
    case 'pause':
      return {
        title: `Pause the deployment of ${version}?`,
        effect: `No further batch opens until it is resumed (the open batch carries on); ${open} ${robots(open)} not finished yet.`,
        button: 'Pause',
      };
    case 'resume':
      return {
        title: `Resume the deployment of ${version}?`,
        effect: `The next batch opens once the open one is done: ${open} ${robots(open)} still to update.`,
        button: 'Resume',
      };
    case 'cancel':
      return {
        title: `Cancel the deployment of ${version}?`,
        effect: `The open batch's job is canceled (robots mid-install finish) and no further batch opens: up to ${open} ${robots(open)} not updated yet keep their version. The ${updated} ${robots(updated)} already on ${version} stay on it; roll it back afterwards to undo them.`,
        button: 'Cancel deployment',
      };
    case 'rollback':
      return {
        title: `Roll back the deployment of ${version}?`,
        effect: `Roll back ${updated} ${robots(updated)} to their previous version. The rollback is a deployment of its own (one per previous version).`,
        button: `Roll back ${updated} ${robots(updated)}`,
      };
  }
}

// ---- progress ----

export interface Progress {
  /** Robots the deployment updates (targeted minus held). */
  readonly total: number;
  /** Finished either way: succeeded, failed, rolled back or canceled. */
  readonly done: number;
  readonly succeeded: number;
  readonly failed: number;
  /** 0..100, whole. */
  readonly percent: number;
}

export function progressOf(deployment: DeploymentSummary): Progress {
  const c = deployment.counts;
  const total = Math.max(0, c.targeted - c.held);
  const done = c.succeeded + c.failed + c.rolledBack + c.canceled;
  return { total, done, succeeded: c.succeeded, failed: c.failed, percent: total === 0 ? 100 : Math.floor((100 * Math.min(done, total)) / total) };
}

/** A deployment's targets as words: "3 robots (a, b, c)", "every lekiwi robot in lifecycle ready", "the whole fleet". */
export function describeTargets(targets: DeploymentSummary['targets']): string {
  if ('robotIds' in targets) {
    const ids = targets.robotIds;
    return `${ids.length} ${robots(ids.length)} (${ids.length <= 3 ? ids.join(', ') : `${ids.slice(0, 3).join(', ')} and ${ids.length - 3} more`})`;
  }
  return describeFilter(targets.filter);
}

export function describeFilter(filter: { model?: string | undefined; lifecycle?: string | undefined }): string {
  if (!filter.model && !filter.lifecycle) return 'the whole fleet';
  return `every ${filter.model ?? ''}${filter.model ? ' ' : ''}robot${filter.lifecycle ? ` in lifecycle ${filter.lifecycle}` : ''}`;
}

/** The strategy as one line: "canary 1, then batches of 5; abort at 20 % failed (after 5); 30 min per robot, 0 retries". */
export function describeStrategy(strategy: DeploymentStrategy): string {
  const canary = strategy.canary > 0 ? `canary of ${strategy.canary}, then ` : 'no canary; ';
  const batches = `batches of ${strategy.batchSize}${strategy.batchGrowthFactor ? ` growing ×${strategy.batchGrowthFactor}` : ''}`;
  return `${canary}${batches}; abort when ${strategy.abortThresholdPercent} % of finished robots failed (once ${strategy.abortMinRobots} finished); ${
    strategy.robotTimeoutMinutes
  } min per robot, ${strategy.retries} ${strategy.retries === 1 ? 'retry' : 'retries'}; health check ${strategy.healthCheckTimeoutSeconds} s`;
}

/** Held robots grouped by reason, most common first. */
export function heldByReason(robotsOf: readonly DeploymentRobotView[]): { reason: string; robotIds: string[] }[] {
  const groups = new Map<string, string[]>();
  for (const robot of robotsOf) {
    if (robot.state !== 'held') continue;
    const reason = robot.reason ?? 'unknown';
    const list = groups.get(reason) ?? [];
    list.push(robot.robotId);
    groups.set(reason, list);
  }
  return [...groups.entries()].map(([reason, robotIds]) => ({ reason, robotIds })).sort((a, b) => b.robotIds.length - a.robotIds.length);
}

export function holdReasonText(reason: string): string {
  return (HOLD_REASON_TEXT as Record<string, string>)[reason] ?? reason;
}

/** The robot rows in the order the page lists them: by batch (held last), then by robot id. */
export function sortDeploymentRobots(robotsOf: readonly DeploymentRobotView[]): DeploymentRobotView[] {
  return [...robotsOf].sort(
    (a, b) => (a.batch ?? Number.MAX_SAFE_INTEGER) - (b.batch ?? Number.MAX_SAFE_INTEGER) || (a.robotId < b.robotId ? -1 : a.robotId > b.robotId ? 1 : 0),
  );
}

// ---- the list ----

/** The first page again: its items replace those with the same id and go on top; older pages already read stay. */
export function mergeFirstPage(current: readonly DeploymentSummary[], first: readonly DeploymentSummary[]): DeploymentSummary[] {
  const ids = new Set(first.map((item) => item.deploymentId));
  return [...first, ...current.filter((item) => !ids.has(item.deploymentId))];
}

export function appendPage(current: readonly DeploymentSummary[], page: readonly DeploymentSummary[]): DeploymentSummary[] {
  const ids = new Set(current.map((item) => item.deploymentId));
  return [...current, ...page.filter((item) => !ids.has(item.deploymentId))];
}

// ---- the deploy dialog ----

export type StrategyKey = keyof DeploymentStrategy;

export interface StrategyField {
  readonly key: StrategyKey;
  readonly label: string;
  readonly min: number;
  readonly max: number;
  readonly integer: boolean;
  /** Undefined: the field may be left empty (batchGrowthFactor). */
  readonly default: number | undefined;
  readonly unit: string;
}

/** The strategy's fields, bounds and defaults as DeploymentStrategy states them (mirrored; a test compares). */
export const STRATEGY_FIELDS: readonly StrategyField[] = [
  { key: 'canary', label: 'Canary robots', min: 0, max: 1_000, integer: true, default: 1, unit: '' },
  { key: 'batchSize', label: 'Batch size', min: 1, max: 1_000, integer: true, default: 5, unit: '' },
  { key: 'batchGrowthFactor', label: 'Batch growth factor (optional)', min: 1.1, max: 5, integer: false, default: undefined, unit: '×' },
  { key: 'abortThresholdPercent', label: 'Abort threshold', min: 0, max: 100, integer: false, default: 20, unit: '%' },
  { key: 'abortMinRobots', label: 'Abort after at least', min: 1, max: 10_000, integer: true, default: 5, unit: 'robots' },
  { key: 'robotTimeoutMinutes', label: 'Timeout per robot', min: 1, max: 10_080, integer: true, default: 30, unit: 'min' },
  { key: 'retries', label: 'Retries', min: 0, max: 10, integer: true, default: 0, unit: '' },
  { key: 'healthCheckTimeoutSeconds', label: 'Health check timeout', min: 5, max: 3_600, integer: true, default: 60, unit: 's' },
];

export type StrategyForm = Record<StrategyKey, string>;

export interface DeployForm {
  readonly release: string;
  readonly strategy: StrategyForm;
  readonly note: string;
}

export function defaultDeployForm(): DeployForm {
  const strategy = Object.fromEntries(STRATEGY_FIELDS.map((f) => [f.key, f.default === undefined ? '' : String(f.default)])) as StrategyForm;
  return { release: '', strategy, note: '' };
}

/** What the deployment targets: the fleet's selection, or its model/lifecycle filter (the other filters cannot be). */
export type DeployTarget =
  | { readonly kind: 'selection'; readonly robotIds: readonly string[] }
  | { readonly kind: 'filter'; readonly model?: string; readonly lifecycle?: string };

export function deployTargetOf(route: { selection: readonly string[]; filters: { model?: string; lifecycle?: string } }): DeployTarget {
  if (route.selection.length > 0) return { kind: 'selection', robotIds: [...new Set(route.selection)] };
  return {
    kind: 'filter',
    ...(route.filters.model ? { model: route.filters.model } : {}),
    ...(route.filters.lifecycle ? { lifecycle: route.filters.lifecycle } : {}),
  };
}

/** Mirrors ReleaseVersion: letters, digits and . _ + - only, starting with a letter or digit, at most 64, no `..`. */
export const RELEASE_VERSION_PATTERN = /^[0-9A-Za-z][0-9A-Za-z._+-]{0,63}$/;
export function releaseVersionProblem(version: string): string | null {
  if (version === '') return 'Name the release version to deploy.';
  if (!RELEASE_VERSION_PATTERN.test(version)) return 'Letters, digits and . _ + - only, starting with a letter or digit, at most 64.';
  if (version.includes('..')) return 'Must not contain "..".';
  return null;
}

export function strategyFieldProblem(field: StrategyField, text: string): string | null {
  const trimmed = text.trim();
  if (trimmed === '') return field.default === undefined ? null : `${field.label}: required.`;
  const value = Number(trimmed);
  if (!Number.isFinite(value)) return `${field.label}: not a number.`;
  if (field.integer && !Number.isInteger(value)) return `${field.label}: a whole number.`;
  if (value < field.min || value > field.max) return `${field.label}: from ${field.min} to ${field.max}.`;
  return null;
}

export type DeployProblems = Partial<Record<'release' | 'targets' | 'note' | StrategyKey, string>>;

/**
 * The request of the dialog's form, or its problems. The strategy is sent whole (what the engineer saw is what is
 * recorded, defaults included); an empty growth factor is left out (fixed batch size).
 */
export function buildCreateRequest(form: DeployForm, target: DeployTarget): { ok: true; request: CreateDeploymentRequest } | { ok: false; problems: DeployProblems } {
  const problems: DeployProblems = {};
  const release = form.release.trim();
  const releaseProblem = releaseVersionProblem(release);
  if (releaseProblem) problems.release = releaseProblem;
  if (target.kind === 'selection' && target.robotIds.length === 0) problems.targets = 'Select at least one robot.';
  if (target.kind === 'selection' && target.robotIds.length > 10_000) problems.targets = 'At most 10,000 robots per deployment.';
  const model = target.kind === 'filter' ? target.model : undefined;
  const lifecycle = target.kind === 'filter' ? target.lifecycle : undefined;
  if (model !== undefined && !isOneOf(model, MODEL_OPTIONS)) problems.targets = `There is no robot model "${model}".`;
  if (lifecycle !== undefined && !isOneOf(lifecycle, LIFECYCLE_OPTIONS)) problems.targets = `There is no lifecycle "${lifecycle}".`;
  const strategy: Partial<Record<StrategyKey, number>> = {};
  for (const field of STRATEGY_FIELDS) {
    const problem = strategyFieldProblem(field, form.strategy[field.key]);
    if (problem) problems[field.key] = problem;
    else if (form.strategy[field.key].trim() !== '') strategy[field.key] = Number(form.strategy[field.key].trim());
  }
  const note = form.note.trim();
  if (note.length > 500) problems.note = 'At most 500 characters.';
  if (Object.keys(problems).length > 0) return { ok: false, problems };
  const targets: CreateDeploymentRequest['targets'] =
    target.kind === 'selection'
      ? { robotIds: [...target.robotIds] }
      : {
          filter: {
            ...(model !== undefined && isOneOf(model, MODEL_OPTIONS) ? { model: model satisfies RobotModel } : {}),
            ...(lifecycle !== undefined && isOneOf(lifecycle, LIFECYCLE_OPTIONS) ? { lifecycle: lifecycle satisfies Lifecycle } : {}),
          },
        };
  return {
    ok: true,
    request: { release, targets, strategy: strategy as CreateDeploymentRequest['strategy'], ...(note ? { note } : {}) },
  };
}

function isOneOf<T extends string>(value: string, options: readonly T[]): value is T {
  return (options as readonly string[]).includes(value);
}

/** The robots of the fleet a target means now, and how many of them are deployable (the rest would be held back). */
export function targetEstimate(fleet: Iterable<RobotView>, target: DeployTarget): { matched: number; deployable: number; unknown: number } {
  let matched = 0;
  let deployable = 0;
  if (target.kind === 'selection') {
    const wanted = new Set(target.robotIds);
    for (const robot of fleet) {
      if (!wanted.has(robot.robotId)) continue;
      matched += 1;
      if (robot.deployable) deployable += 1;
    }
    return { matched, deployable, unknown: wanted.size - matched };
  }
  for (const robot of fleet) {
    if (target.model && robot.model !== target.model) continue;
    if (target.lifecycle && robot.lifecycle !== target.lifecycle) continue;
    matched += 1;
    if (robot.deployable) deployable += 1;
  }
  return { matched, deployable, unknown: 0 };
}

/** The batch sizes a strategy makes of `n` robots (an estimate: the cloud plans the real batches from its snapshot). */
export function planBatches(n: number, strategy: Pick<DeploymentStrategy, 'canary' | 'batchSize' | 'batchGrowthFactor'>): number[] {
  const sizes: number[] = [];
  let left = Math.max(0, n);
  const canary = Math.min(left, strategy.canary);
  if (canary > 0) sizes.push(canary);
  left -= canary;
  let size = strategy.batchSize;
  while (left > 0 && sizes.length < 10_000) {
    const take = Math.min(left, Math.max(1, Math.round(size)));
    sizes.push(take);
    left -= take;
    if (strategy.batchGrowthFactor) size *= strategy.batchGrowthFactor;
  }
  return sizes;
}

/** The summary line of the dialog: what will happen, in one sentence. */
export function deploySummary(request: CreateDeploymentRequest, estimate: { matched: number; deployable: number }, targetText: string): string {
  const strategy = { ...strategyDefaults(), ...request.strategy } as DeploymentStrategy;
  const batches = planBatches(estimate.deployable, strategy);
  const held = estimate.matched - estimate.deployable;
  return `Deploy ${request.release} to ${targetText}: ${estimate.deployable} of ${estimate.matched} ${robots(estimate.matched)} deployable now${
    held > 0 ? ` (${held} held back)` : ''
  }, in about ${batches.length} ${batches.length === 1 ? 'batch' : 'batches'} (${describeStrategy(strategy)}).`;
}

export function strategyDefaults(): Partial<DeploymentStrategy> {
  const out: Partial<Record<StrategyKey, number>> = {};
  for (const field of STRATEGY_FIELDS) if (field.default !== undefined) out[field.key] = field.default;
  return out as Partial<DeploymentStrategy>;
}
