import { describe, expect, it } from 'vitest';
import type { DeploymentView, EventView } from '../../../schemas/index.js';
import { ApiRequestError } from '../../../dashboard/src/api/client.js';
import { DeploymentWatch, EVENT_REFRESH_MS, FALLBACK_MS } from '../../../dashboard/src/live/deployment-watch.js';
import { describeFailure } from '../../../dashboard/src/views/bulk.js';
import { FakeLiveEnvironment, settle } from './fake-live-env.js';
import { DEPLOYMENT_ID, deploymentView, eventView } from './fixtures.js';

/**
 * The deployment page's refresh rules, on a hand-driven clock: a read at once, then one per EVENT_REFRESH_MS at most
 * while its robots' RobotUpdate* events arrive, one FALLBACK_MS after the last read otherwise, none once final.
 */
function start(answers: Array<DeploymentView | Error> = []) {
  const env = new FakeLiveEnvironment();
  const reads: number[] = [];
  let next = 0;
  const api = {
    getDeployment: async (deploymentId: string) => {
      expect(deploymentId).toBe(DEPLOYMENT_ID);
      reads.push(env.now());
      const answer = answers[Math.min(next++, answers.length - 1)] ?? deploymentView();
      if (answer instanceof Error) throw answer;
      return answer;
    },
  };
  let listener: ((events: ReadonlyMap<string, readonly EventView[]>) => void) | null = null;
  let stops = 0;
  const watch = new DeploymentWatch(DEPLOYMENT_ID, {
    api,
    clock: env,
    describe: describeFailure,
    onEvents: (added) => {
      listener = added;
      return () => {
        stops += 1;
        listener = null;
      };
    },
  });
  let notified = 0;
  watch.subscribe(() => (notified += 1));
  watch.start();
  /** One frame batch of the store: each robot's events. */
  const deliver = (batch: Record<string, string[]>) =>
    listener?.(new Map(Object.entries(batch).map(([robotId, types]) => [robotId, types.map((type, i) => eventView(i + 1, { type }))])));
  return { env, watch, reads, deliver, notified: () => notified, stops: () => stops, listening: () => listener !== null };
}

describe('the deployment watch', () => {
  it('reads the deployment at once and shows it', async () => {
    const { watch, reads, notified } = start();
    await settle();
    expect(reads).toEqual([0]);
    expect(notified()).toBe(1);
    expect(watch.getSnapshot()).toMatchObject({ deployment: { deploymentId: DEPLOYMENT_ID, state: 'running' }, error: null, reads: 1 });
  });

  it('reads again at most once a second however many update events of its robots arrive', async () => {
    const { env, reads, deliver } = start();
    await settle();
    env.advance(100);
    for (let i = 0; i < 30; i += 1) {
      deliver({ 'lekiwi-D1': ['RobotUpdateStarted', 'RobotUpdateSucceeded'], 'lekiwi-D2': ['RobotUpdateQueued'] });
      env.advance(50);
      await settle();
    }
    // 1.6 s of events after the first read at 0: reads at 1 s and 2 s (one per second), not 30.
    env.advance(EVENT_REFRESH_MS);
    await settle();
    expect(reads).toEqual([0, EVENT_REFRESH_MS, 2 * EVENT_REFRESH_MS]);
  });

  it('ignores events of other robots and events that are not updates', async () => {
    const { env, reads, deliver } = start();
    await settle();
    deliver({ 'lekiwi-OTHER': ['RobotUpdateFailed'], 'lekiwi-D1': ['RobotConnected', 'AlertRaised', 'SoftwareVersionReported'] });
    env.advance(FALLBACK_MS - 1);
    await settle();
    expect(reads).toEqual([0]);
  });

  it('reads every 5 s as a fallback while not final, and stops once final (events and timer both)', async () => {
    const { env, watch, reads, deliver, stops } = start([deploymentView(), deploymentView({ state: 'paused' }), deploymentView({ state: 'completed' })]);
    await settle();
    env.advance(FALLBACK_MS);
    await settle();
    expect(reads).toEqual([0, FALLBACK_MS]);
    env.advance(FALLBACK_MS);
    await settle();
    expect(reads).toEqual([0, FALLBACK_MS, 2 * FALLBACK_MS]);
    expect(watch.getSnapshot().deployment?.state).toBe('completed');
    deliver({ 'lekiwi-D1': ['RobotUpdateRolledBack'] });
    env.advance(10 * FALLBACK_MS);
    await settle();
    expect(reads).toHaveLength(3);
    // The user's own action still reads it (a rollback changes a final deployment's record).
    await watch.refresh();
    expect(reads).toHaveLength(4);
    watch.close();
    expect(stops()).toBe(1);
  });

  it('keeps the last view when a read fails and says why; the fallback retries', async () => {
    const { env, watch, reads } = start([deploymentView(), new ApiRequestError(503, 'SERVER_ERROR', 'try later'), deploymentView({ state: 'aborted', reason: '3 of 8 failed' })]);
    await settle();
    env.advance(FALLBACK_MS);
    await settle();
    expect(watch.getSnapshot()).toMatchObject({ deployment: { state: 'running' }, error: '503 SERVER_ERROR: try later', notFound: false });
    env.advance(FALLBACK_MS);
    await settle();
    expect(reads).toHaveLength(3);
    expect(watch.getSnapshot()).toMatchObject({ deployment: { state: 'aborted', reason: '3 of 8 failed' }, error: null });
  });

  it('stops on a 404, and reads nothing after close', async () => {
    const gone = start([new ApiRequestError(404, 'NOT_FOUND', 'no such deployment')]);
    await settle();
    expect(gone.watch.getSnapshot()).toMatchObject({ deployment: null, notFound: true });
    gone.env.advance(10 * FALLBACK_MS);
    await settle();
    expect(gone.reads).toEqual([0]);

    const closed = start();
    await settle();
    closed.watch.close();
    expect(closed.listening()).toBe(false);
    closed.env.advance(10 * FALLBACK_MS);
    await settle();
    expect(closed.reads).toEqual([0]);
  });
});
