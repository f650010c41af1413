import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  abortReason,
  decide,
  DeploymentTransitionRejected,
  evolve,
  startDeployment,
  type DeploymentEffect,
  type DeploymentHead,
  type DeploymentInput,
  type StartInput,
} from '../../../functions/domain/deployment.js';
import { holdReason, planDeployment, rollingBatchSizes, type PlannedTarget } from '../../../functions/domain/deployment-plan.js';
import { toRobotView } from '../../../functions/domain/robot-view.js';
import { fold, initialRobotState } from '../../../functions/domain/robot-state.js';
import { DeploymentRecordEvent, DeploymentStrategy, type RobotOutcome } from '../../../schemas/deployments.js';
import type { RobotView } from '../../../schemas/index.js';
import { robotHistory } from '../../support/read-model-seed.js';

const AT = '2026-12-01T10:00:00.000Z';
const ID = 'dep-01KBCDEFGHJKMNPQRSTVWXYZ01';
const RELEASE = { version: '1.4.0', manifestSha256: 'a'.repeat(64), fileCount: 3, totalBytes: 300 };

function strategy(overrides: Partial<DeploymentStrategy> = {}): DeploymentStrategy {
  return DeploymentStrategy.parse(overrides);
}

function start(sizes: number[], overrides: Partial<DeploymentStrategy> = {}, canary = true, kind: 'deploy' | 'rollback' = 'deploy') {
  const input: StartInput = {
    deploymentId: ID,
    kind,
    parentDeploymentId: null,
    release: RELEASE,
    strategy: strategy(overrides),
    targets: { robotIds: ['lekiwi-R0001'] },
    note: null,
    createdBy: 'eve',
    at: AT,
    batchSizes: sizes,
    canary,
    held: 0,
  };
  return startDeployment(input);
}

function apply(head: DeploymentHead, input: DeploymentInput) {
  const decision = decide(head, input);
  return { head: decision.events.reduce(evolve, head), ...decision };
}

const outcome = (batch: number, robot: number, result: RobotOutcome): DeploymentInput => ({
  type: 'outcome',
  robotId: `lekiwi-R${String(robot).padStart(4, '0')}`,
  batch,
  outcome: result,
  reason: result === 'failed' ? 'HEALTH_CHECK_FAILED' : null,
  fromVersion: '1.3.0',
  at: AT,
});

describe('the plan', () => {
  const view = (robotId: string, traits: Parameters<typeof robotHistory>[1] = {}): RobotView => {
    const events = robotHistory(robotId, traits);
    return toRobotView(fold(initialRobotState(robotId), events), events.length, null);
  };

  it('holds back robots that are teleoperated, failed, offline, unknown, of another model or not yet provisioned', () => {
    const release = { version: '1.4.0', model: 'lekiwi' as const };
    expect(holdReason(view('lekiwi-A0001'), release, 'deploy')).toBeNull();
    expect(holdReason(view('lekiwi-A0002', { teleoperated: true }), release, 'deploy')).toBe('teleoperated');
    expect(holdReason(view('lekiwi-A0003', { failed: 'jammed' }), release, 'deploy')).toBe('failed');
    expect(holdReason(view('lekiwi-A0004', { online: false }), release, 'deploy')).toBe('offline');
    expect(holdReason(view('xle-A0005'), release, 'deploy')).toBe('model-mismatch');
    expect(holdReason({ ...view('lekiwi-A0006', { online: false }), lifecycle: 'provisioning' }, release, 'deploy')).toBe('provisioning');
    expect(holdReason(null, release, 'deploy')).toBe('unknown');
    const deploying = { ...view('lekiwi-A0007'), software: { version: '1.3.0', update: { deploymentId: ID, version: '1.3.0', state: 'queued' as const, since: AT } } };
    expect(holdReason(deploying, release, 'deploy')).toBe('deploying');
    // A rollback goes to robots whatever they do now: Jobs waits for them, the agent defers while driven.
    expect(holdReason(view('lekiwi-A0004', { online: false }), release, 'rollback')).toBeNull();
  });

  it('puts the canary first, then rolling batches of batchSize, keeping the targets order', () => {
    const targets: PlannedTarget[] = Array.from({ length: 12 }, (_, i) => ({ robotId: `lekiwi-B${String(i).padStart(4, '0')}`, view: view(`lekiwi-B${String(i).padStart(4, '0')}`) }));
    targets.splice(3, 0, { robotId: 'lekiwi-GONE', view: null });
    const plan = planDeployment(targets, { version: '1.4.0' }, { canary: 2, batchSize: 5 }, 'deploy');
    expect(plan.batches.map((b) => b.length)).toEqual([2, 5, 5]);
    expect(plan.batches.flat()).toEqual(targets.filter((t) => t.view).map((t) => t.robotId));
    expect(plan.held).toEqual([{ robotId: 'lekiwi-GONE', reason: 'unknown' }]);
    expect(plan.canary).toBe(true);
  });

  it('grows rolling batches by the factor', () => {
    expect(rollingBatchSizes(100, { batchSize: 5, batchGrowthFactor: 2 })).toEqual([5, 10, 20, 40, 25]);
    expect(rollingBatchSizes(7, { batchSize: 3 })).toEqual([3, 3, 1]);
    expect(rollingBatchSizes(0, { batchSize: 3 })).toEqual([]);
  });

  it('puts every target in one batch or holds it, never both (any fleet, any strategy)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ n: fc.integer({ min: 0, max: 40 }), deployable: fc.boolean() }), { maxLength: 60 }),
        fc.integer({ min: 0, max: 5 }),
        fc.integer({ min: 1, max: 7 }),
        fc.option(fc.double({ min: 1.1, max: 5, noNaN: true }), { nil: undefined }),
        (robots, canary, batchSize, batchGrowthFactor) => {
          const offline = view('lekiwi-X0000', { online: false });
          const online = view('lekiwi-X0001');
          const targets = robots.map(({ n, deployable }) => ({ robotId: `lekiwi-Y${String(n).padStart(4, '0')}`, view: deployable ? online : offline }));
          const plan = planDeployment(targets, { version: '1' }, { canary, batchSize, batchGrowthFactor }, 'deploy');
          const placed = plan.batches.flat();
          const held = plan.held.map((h) => h.robotId);
          expect(new Set([...placed, ...held]).size).toBe(placed.length + held.length);
          expect(new Set([...placed, ...held])).toEqual(new Set(targets.map((t) => t.robotId)));
          expect(plan.batches.every((b) => b.length > 0)).toBe(true);
          if (plan.canary) expect(plan.batches[0]?.length).toBe(Math.min(canary, placed.length));
        },
      ),
    );
  });
});

describe('the deployment decider', () => {
  it('starts with batch 0 open and its job to create', () => {
    const { head, events, effects } = start([2, 5, 5]);
    expect(events.map((e) => e.type)).toEqual(['DeploymentStarted', 'DeploymentBatchStarted']);
    expect(events.every((e) => DeploymentRecordEvent.safeParse(e).success)).toBe(true);
    expect(effects).toEqual([{ type: 'openBatch', batch: 0, jobId: `${ID}-b0` }]);
    expect(head.batches.map((b) => [b.kind, b.state])).toEqual([['canary', 'running'], ['rolling', 'pending'], ['rolling', 'pending']]);
  });

  it('opens the next batch only when the canary is done, and completes after the last', () => {
    let { head } = start([2, 1]);
    let step = apply(head, outcome(0, 1, 'succeeded'));
    expect(step.effects).toEqual([]);
    step = apply(step.head, outcome(0, 2, 'succeeded'));
    expect(step.events.map((e) => e.type)).toEqual(['DeploymentRobotOutcome', 'DeploymentBatchCompleted', 'DeploymentBatchStarted']);
    expect(step.effects).toEqual([{ type: 'openBatch', batch: 1, jobId: `${ID}-b1` }]);
    step = apply(step.head, outcome(1, 3, 'succeeded'));
    expect(step.events.at(-1)?.type).toBe('DeploymentCompleted');
    head = step.head;
    expect(head.state).toBe('completed');
    expect(head.counts.succeeded).toBe(3);
  });

  it('aborts when a canary fails, cancels nothing left open, and rolls back the canary robot that succeeded', () => {
    const { head } = start([2, 5], { abortThresholdPercent: 20, abortMinRobots: 5 });
    let step = apply(head, outcome(0, 1, 'succeeded'));
    step = apply(step.head, outcome(0, 2, 'failed'));
    expect(step.head.state).toBe('aborted');
    expect(step.head.reason).toBe('canary failed: 1 of 2 finished robots failed (50 % ≥ 20 %)');
    expect(step.effects).toEqual([{ type: 'rollbackSucceeded', asOfSeq: step.head.lastSeq, at: AT }]);
    expect(step.head.batches[1]?.state).toBe('canceled');
  });

  it('aborts at the threshold once enough robots finished, names the share, cancels the open job', () => {
    let { head } = start([8, 8], { canary: 0, abortThresholdPercent: 20, abortMinRobots: 5 }, false);
    const results: RobotOutcome[] = ['succeeded', 'failed', 'succeeded', 'succeeded', 'succeeded', 'failed', 'succeeded', 'failed'];
    let last: ReturnType<typeof apply> | undefined;
    results.forEach((result, i) => {
      last = apply(head, outcome(0, i + 1, result));
      head = last.head;
    });
    // 1 of 5 after the fifth (20 % ≥ 20 %) tripped it; the robots in progress still finish and are counted.
    expect(head.state).toBe('aborted');
    expect(head.reason).toBe('1 of 5 finished robots failed (20 % ≥ 20 %)');
    expect(head.counts).toMatchObject({ succeeded: 5, failed: 3 });
    expect(last?.effects).toEqual([]);
    const abort = DeploymentRecordEvent.parse({ deploymentId: ID, seq: 1, at: AT, type: 'DeploymentAborted', data: { reason: 'x', failed: 3, finished: 8 } });
    expect(abort.type).toBe('DeploymentAborted');
    expect(abortReason({ ...head, state: 'running', counts: { ...head.counts, failed: 3, succeeded: 5 } })?.reason).toBe('3 of 8 finished robots failed (37.5 % ≥ 20 %)');
  });

  it('pauses (no batch opens), resumes (the next opens), and refuses transitions that make no sense with a 409-style error', () => {
    const { head } = start([1, 1]);
    let step = apply(head, { type: 'pause', by: 'eve', reason: 'lunch', at: AT });
    step = apply(step.head, outcome(0, 1, 'succeeded'));
    expect(step.effects).toEqual([]);
    expect(step.head.batches[1]?.state).toBe('pending');
    expect(() => decide(step.head, { type: 'pause', by: 'eve', reason: null, at: AT })).toThrow(DeploymentTransitionRejected);
    step = apply(step.head, { type: 'resume', by: 'eve', reason: null, at: AT });
    expect(step.effects).toEqual([{ type: 'openBatch', batch: 1, jobId: `${ID}-b1` }]);
    step = apply(step.head, outcome(1, 2, 'succeeded'));
    expect(step.head.state).toBe('completed');
    expect(() => decide(step.head, { type: 'resume', by: 'eve', reason: null, at: AT })).toThrow(/Cannot resume deployment .*: it is completed/);
  });

  it('cancels the open job on cancel and opens nothing after', () => {
    const { head } = start([2, 2]);
    let step = apply(head, { type: 'cancel', by: 'eve', reason: 'wrong release', at: AT });
    expect(step.effects).toEqual([{ type: 'cancelJob', batch: 0, jobId: `${ID}-b0`, reasonCode: 'DEPLOYMENT_CANCELED' }]);
    step = apply(step.head, outcome(0, 1, 'succeeded'));
    step = apply(step.head, outcome(0, 2, 'canceled'));
    expect(step.effects).toEqual([]);
    expect(step.head.state).toBe('canceled');
    // Now it can be rolled back, once.
    step = apply(step.head, { type: 'rollback', by: 'eve', reason: null, at: AT });
    expect(step.effects).toEqual([{ type: 'rollbackSucceeded', asOfSeq: step.head.lastSeq, at: AT }]);
    expect(() => decide(step.head, { type: 'rollback', by: 'eve', reason: null, at: AT })).toThrow(/already rolled back/);
  });

  it('never aborts a rollback deployment', () => {
    let { head } = start([3], { abortMinRobots: 1 }, false, 'rollback');
    for (let i = 1; i <= 3; i += 1) head = apply(head, outcome(0, i, 'failed')).head;
    expect(head.state).toBe('completed');
  });
});

describe('the deployment decider, for any sequence of outcomes and actions', () => {
  type Action = { kind: 'outcome'; pick: number; result: RobotOutcome } | { kind: 'pause' | 'resume' | 'cancel' | 'rollback' };
  const action: fc.Arbitrary<Action> = fc.oneof(
    { weight: 12, arbitrary: fc.record({ kind: fc.constant('outcome' as const), pick: fc.nat(), result: fc.constantFrom<RobotOutcome>('succeeded', 'succeeded', 'failed', 'canceled') }) },
    { weight: 1, arbitrary: fc.constantFrom({ kind: 'pause' as const }, { kind: 'resume' as const }, { kind: 'cancel' as const }, { kind: 'rollback' as const }) },
  );

  it('gives each robot at most one outcome, opens batches in order, none after abort or cancel, and rolls back exactly the succeeded robots', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 6 }),
        fc.integer({ min: 0, max: 100 }),
        fc.integer({ min: 1, max: 6 }),
        fc.array(action, { maxLength: 80 }),
        (sizes, threshold, minRobots, actions) => {
          let { head, effects } = start(sizes, { abortThresholdPercent: threshold, abortMinRobots: minRobots });
          const members = sizes.map((size, batch) => Array.from({ length: size }, (_, i) => `lekiwi-B${batch}R${i}`));
          const outcomes = new Map<string, { result: RobotOutcome; seq: number }>();
          const opened: number[] = [];
          const rolledBack: string[] = [];
          const run = (list: readonly DeploymentEffect[]) => {
            for (const effect of list) {
              if (effect.type === 'openBatch') {
                expect(['aborted', 'canceled', 'completed']).not.toContain(head.state);
                // The previous batch is done: every robot of it has its outcome.
                if (effect.batch > 0) expect(members[effect.batch - 1]?.every((r) => outcomes.has(r))).toBe(true);
                opened.push(effect.batch);
              }
              if (effect.type === 'rollbackSucceeded') {
                for (const [robotId, o] of outcomes) if (o.result === 'succeeded' && o.seq <= effect.asOfSeq) rolledBack.push(robotId);
              }
              if (effect.type === 'rollbackRobots') rolledBack.push(...effect.robots.map((r) => r.robotId));
            }
          };
          run(effects);
          for (const a of actions) {
            let input: DeploymentInput;
            if (a.kind === 'outcome') {
              const waiting = opened.flatMap((batch) => (members[batch] ?? []).map((robotId) => ({ robotId, batch }))).filter((r) => !outcomes.has(r.robotId));
              const chosen = waiting[a.pick % Math.max(1, waiting.length)];
              if (!chosen) continue;
              input = { type: 'outcome', robotId: chosen.robotId, batch: chosen.batch, outcome: a.result, reason: null, fromVersion: '1.3.0', at: AT };
            } else {
              input = { type: a.kind, by: 'eve', reason: null, at: AT };
            }
            let decision;
            try {
              decision = decide(head, input);
            } catch (error) {
              expect(error).toBeInstanceOf(DeploymentTransitionRejected);
              continue;
            }
            for (const event of decision.events) {
              expect(DeploymentRecordEvent.safeParse(event).success).toBe(true);
              // An abort happens exactly when the criteria hold, and only from running or paused.
              if (event.type === 'DeploymentAborted') {
                expect(['running', 'paused']).toContain(head.state);
                expect(abortReason(head)?.reason).toBe(event.data.reason);
              }
              expect(event.seq).toBe(head.lastSeq + 1);
              head = evolve(head, event);
              if (event.type === 'DeploymentRobotOutcome') {
                expect(outcomes.has(event.data.robotId)).toBe(false);
                outcomes.set(event.data.robotId, { result: event.data.outcome, seq: event.seq });
              }
            }
            run(decision.effects);
          }
          // Batches open in order, each once.
          expect(opened).toEqual(opened.map((_, i) => i));
          // The counts are the outcomes.
          const count = (r: RobotOutcome) => [...outcomes.values()].filter((o) => o.result === r).length;
          expect([head.counts.succeeded, head.counts.failed, head.counts.canceled]).toEqual([count('succeeded'), count('failed'), count('canceled')]);
          // Rolled back: exactly the robots that succeeded, each once; nothing when no rollback was asked for.
          const succeeded = [...outcomes].filter(([, o]) => o.result === 'succeeded').map(([id]) => id);
          expect(rolledBack.length).toBe(new Set(rolledBack).size);
          expect(new Set(rolledBack)).toEqual(head.rollback.requested ? new Set(succeeded) : new Set());
          // A deployment that completed never met the abort criteria on the way (checked at the end: the counts only grow).
          if (head.state === 'completed') expect(opened.length).toBe(sizes.length);
        },
      ),
      { numRuns: 400 },
    );
  });
});
