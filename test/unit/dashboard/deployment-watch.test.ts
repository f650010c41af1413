import { describe, expect, it } from 'vitest';
import type { DeploymentChanged, DeploymentView, EventView } from '../../../schemas/index.js';
import { ApiRequestError } from '../../../dashboard/src/api/client.js';
import { DeploymentWatch, EVENT_REFRESH_MS, FALLBACK_MS, LIST_CHANGE_REFRESH_MS, refreshListOnChanges } from '../../../dashboard/src/live/deployment-watch.js';
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
  let changeListener: ((change: DeploymentChanged) => void) | null = null;
  const watch = new DeploymentWatch(DEPLOYMENT_ID, {
    onDeploymentChanges: (added) => {
      changeListener = added;
      return () => {
        changeListener = null;
      };
    },
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
  /** A DeploymentChanged on the live feed. */
  const changed = (revision: number, deploymentId = DEPLOYMENT_ID) => changeListener?.(deploymentChanged(revision, deploymentId));
  return { env, watch, reads, deliver, changed, notified: () => notified, stops: () => stops, listening: () => listener !== null, listeningToChanges: () => changeListener !== null };
}

function deploymentChanged(revision: number, deploymentId = DEPLOYMENT_ID): DeploymentChanged {
  const view = deploymentView();
  return { type: 'DeploymentChanged', deploymentId, state: view.state, reason: view.reason, counts: view.counts, batches: view.batches, updatedAt: view.updatedAt, revision };
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

describe('the deployment watch on DeploymentChanged', () => {
  it('reads again on a change of its deployment, at most once a second, and not on other deployments or repeats', async () => {
    const { env, reads, changed } = start();
    await settle();
    changed(2, 'dep-01JDZ5N8X2K7QF3M9V6T4B1C0Z');
    env.advance(FALLBACK_MS - 1);
    await settle();
    expect(reads).toEqual([0]);
    changed(2);
    env.advance(0); // the throttle's timer, due now
    await settle();
    expect(reads).toEqual([0, FALLBACK_MS - 1]);
    // A burst of revisions within the second: one more read, a second after the last.
    for (const revision of [3, 4, 5, 5, 4]) changed(revision);
    env.advance(EVENT_REFRESH_MS);
    await settle();
    expect(reads).toEqual([0, FALLBACK_MS - 1, FALLBACK_MS - 1 + EVENT_REFRESH_MS]);
    // A repeat or an older revision says nothing new.
    env.advance(100);
    changed(5);
    changed(3);
    env.advance(EVENT_REFRESH_MS);
    await settle();
    expect(reads).toHaveLength(3);
  });

  it('keeps the 5 s fallback when no change arrives', async () => {
    const { env, reads } = start();
    await settle();
    env.advance(FALLBACK_MS);
    await settle();
    expect(reads).toEqual([0, FALLBACK_MS]);
  });

  it('reads a final deployment again when its record changes (a rollback recorded on it), but not on events', async () => {
    const { env, watch, reads, changed, deliver } = start([deploymentView({ state: 'aborted' }), deploymentView({ state: 'aborted', rollbackDeploymentId: 'dep-01JDZ5N8X2K7QF3M9V6T4B1C0Y' })]);
    await settle();
    deliver({ 'lekiwi-D1': ['RobotUpdateRolledBack'] });
    env.advance(10 * FALLBACK_MS);
    await settle();
    expect(reads).toEqual([0]);
    changed(9);
    env.advance(0);
    await settle();
    expect(reads).toHaveLength(2);
    expect(watch.getSnapshot().deployment?.rollbackDeploymentId).toBe('dep-01JDZ5N8X2K7QF3M9V6T4B1C0Y');
  });

  it('stops listening to changes on close', async () => {
    const { watch, reads, changed, listeningToChanges } = start();
    await settle();
    expect(listeningToChanges()).toBe(true);
    watch.close();
    expect(listeningToChanges()).toBe(false);
    changed(2);
    await settle();
    expect(reads).toEqual([0]);
  });
});

describe('the deployments list on DeploymentChanged', () => {
  function list() {
    const env = new FakeLiveEnvironment();
    const reads: number[] = [];
    let listener: ((change: DeploymentChanged) => void) | null = null;
    const stop = refreshListOnChanges({
      onDeploymentChanges: (added) => {
        listener = added;
        return () => {
          listener = null;
        };
      },
      read: async () => {
        reads.push(env.now());
      },
      clock: env,
    });
    return { env, reads, stop, changed: (revision: number, deploymentId = DEPLOYMENT_ID) => listener?.(deploymentChanged(revision, deploymentId)), listening: () => listener !== null };
  }

  it('reads the first page on any deployment’s change, at most once a second however many come', async () => {
    const { env, reads, changed } = list();
    changed(1, 'dep-01JDZ5N8X2K7QF3M9V6T4B1C0Z');
    env.advance(0);
    await settle();
    expect(reads).toEqual([0]);
    for (let i = 0; i < 25; i += 1) {
      changed(2 + i, i % 2 === 0 ? DEPLOYMENT_ID : 'dep-01JDZ5N8X2K7QF3M9V6T4B1C0Z');
      env.advance(100);
      await settle();
    }
    // 2.5 s of changes after the read at 0: reads at 1 s and 2 s, then one for the changes after 2 s at 3 s.
    env.advance(LIST_CHANGE_REFRESH_MS);
    await settle();
    expect(reads).toEqual([0, LIST_CHANGE_REFRESH_MS, 2 * LIST_CHANGE_REFRESH_MS, 3 * LIST_CHANGE_REFRESH_MS]);
  });

  it('reads nothing without a change, and nothing after stop', async () => {
    const { env, reads, stop, changed, listening } = list();
    env.advance(10 * LIST_CHANGE_REFRESH_MS);
    await settle();
    expect(reads).toEqual([]);
    changed(1);
    stop();
    expect(listening()).toBe(false);
    env.advance(10 * LIST_CHANGE_REFRESH_MS);
    await settle();
    expect(reads).toEqual([]);
  });
});
