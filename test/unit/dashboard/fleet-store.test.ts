import { describe, expect, it } from 'vitest';
import { STALE_AFTER_MS } from '../../../dashboard/src/contracts.js';
import {
  BEHIND_GRACE_MS,
  createFleetStore,
  FIRST_LOAD_WAIT_MS,
  FRAME_FALLBACK_MS,
  METRICS_INTERVAL_MS,
  socketUrlOf,
} from '../../../dashboard/src/live/fleet-store.js';
import { FakeLiveEnvironment, settle, type FakeSocket } from './fake-live-env.js';
import { FakeApi } from './fake-api.js';
import { eventView, metrics, robotView, telemetryAt } from './fixtures.js';

const WS = 'wss://live.example/prod';

function start() {
  const env = new FakeLiveEnvironment();
  const api = new FakeApi();
  let tokens = 0;
  const store = createFleetStore({ api, env, webSocketUrl: WS, idToken: async () => `token-${++tokens}` });
  let notified = 0;
  store.subscribe(() => (notified += 1));
  store.start();
  return { env, api, store, notified: () => notified, tokens: () => tokens };
}

/** Opens the socket the store asked for and acknowledges its subscription. */
async function goLive(env: FakeLiveEnvironment): Promise<FakeSocket> {
  await settle();
  const socket = env.lastSocket;
  socket.open();
  socket.receive({ type: 'Subscribed', robotIds: ['*'] });
  return socket;
}

async function answerReads(api: FakeApi, robots = [robotView('lekiwi-A1'), robotView('lekiwi-A2')], count = robots.length) {
  api.robotsCalls[api.robotsCalls.length - 1]!.resolve(robots);
  api.metricsCalls[api.metricsCalls.length - 1]!.resolve(metrics(count));
  await settle();
}

describe('the fleet store: one live connection', () => {
  it('opens one socket with the id token and subscribes to the whole fleet with the telemetry rate', async () => {
    const { env } = start();
    await settle();
    expect(env.sockets).toHaveLength(1);
    expect(env.lastSocket.url).toBe(`${WS}?token=token-1`);
    env.lastSocket.open();
    expect(env.lastSocket.sent.map((text) => JSON.parse(text))).toEqual([{ action: 'subscribe', robotIds: ['*'], telemetry: '1s' }]);
    expect(socketUrlOf('wss://x.example/live?stage=a', 'a.b.c')).toBe('wss://x.example/live?stage=a&token=a.b.c');
  });

  it('reads the list and metrics after the subscription is acknowledged, then shows them in one frame', async () => {
    const { env, api, store, notified } = start();
    expect(api.robotsCalls).toHaveLength(0);
    await goLive(env);
    expect(api.robotsCalls).toHaveLength(1);
    expect(api.metricsCalls).toHaveLength(1);
    await answerReads(api);
    expect(notified()).toBe(0); // nothing until the frame
    env.time = 1234;
    env.frame();
    expect(notified()).toBe(1);
    const snapshot = store.getSnapshot();
    expect(snapshot).toMatchObject({ loaded: true, error: null, link: { state: 'live', since: 1234 } });
    expect([...snapshot.robots.keys()]).toEqual(['lekiwi-A1', 'lekiwi-A2']);
    expect(snapshot.metrics!.robots).toBe(2);
    expect(snapshot.updatedAt.get('lekiwi-A1')).toBe(1234);
  });

  it('reads the list anyway when no subscription comes within FIRST_LOAD_WAIT_MS', async () => {
    const { env, api } = start();
    await settle();
    env.advance(FIRST_LOAD_WAIT_MS - 1);
    expect(api.robotsCalls).toHaveLength(0);
    env.advance(1);
    expect(api.robotsCalls).toHaveLength(1);
    expect(api.metricsCalls).toHaveLength(1);
  });

  it('applies any number of messages in one frame: one snapshot, new maps, listeners told once', async () => {
    const { env, api, store, notified } = start();
    const socket = await goLive(env);
    await answerReads(api);
    env.frame();
    const before = store.getSnapshot();
    const count = notified();
    for (let i = 1; i <= 200; i += 1) {
      const sampledAt = new Date(Date.parse('2026-12-01T10:00:00.000Z') + i * 1000).toISOString();
      socket.receive({ type: 'RobotsUpdated', at: sampledAt, robots: [robotView(i % 2 ? 'lekiwi-A1' : 'lekiwi-A2', { telemetry: telemetryAt(sampledAt, { cpuPercent: i % 100 }) })] });
    }
    expect(store.getSnapshot()).toBe(before);
    expect(env.pendingFrames).toBe(1);
    env.time = 5000;
    env.frame();
    expect(notified()).toBe(count + 1);
    const after = store.getSnapshot();
    expect(after).not.toBe(before);
    expect(after.robots).not.toBe(before.robots);
    expect(after.updatedAt).not.toBe(before.updatedAt);
    expect(after.robots.get('lekiwi-A1')!.telemetry!.cpuPercent).toBe(99);
    expect(after.robots.get('lekiwi-A2')!.telemetry!.cpuPercent).toBe(0);
    expect(after.updatedAt.get('lekiwi-A1')).toBe(5000);
    expect(before.robots.get('lekiwi-A1')!.telemetry!.cpuPercent).toBe(10); // an old snapshot never changes
  });

  it('applies the batch without frames too (a hidden tab gets none), after FRAME_FALLBACK_MS', async () => {
    const { env, api, store } = start();
    await goLive(env);
    await answerReads(api);
    env.advance(FRAME_FALLBACK_MS);
    expect(store.getSnapshot().loaded).toBe(true);
  });

  it('tells telemetry listeners of their robot in the frame', async () => {
    const { env, api, store } = start();
    const socket = await goLive(env);
    await answerReads(api);
    env.frame();
    const seen: number[] = [];
    const stop = store.onTelemetry('lekiwi-A1', (robot) => seen.push(robot.telemetry!.cpuPercent!));
    socket.receive({ type: 'RobotsUpdated', at: 'x', robots: [robotView('lekiwi-A1', { telemetry: telemetryAt('2026-12-01T10:00:05.000Z', { cpuPercent: 55 }) })] });
    socket.receive({ type: 'RobotsUpdated', at: 'x', robots: [robotView('lekiwi-A2', { telemetry: telemetryAt('2026-12-01T10:00:05.000Z', { cpuPercent: 66 }) })] });
    expect(seen).toEqual([]);
    env.frame();
    expect(seen).toEqual([55]);
    stop();
    socket.receive({ type: 'RobotsUpdated', at: 'x', robots: [robotView('lekiwi-A1', { telemetry: telemetryAt('2026-12-01T10:00:06.000Z', { cpuPercent: 56 }) })] });
    env.frame();
    expect(seen).toEqual([55]);
  });

  it('falls back to per-sample RobotTelemetry when the server refuses the telemetry rate', async () => {
    const { env, api, store } = start();
    await settle();
    const socket = env.lastSocket;
    socket.open();
    socket.receive({ type: 'Error', error: { code: 'INVALID_REQUEST', message: 'Invalid body: unrecognized key telemetry' } });
    expect(socket.sent.map((text) => JSON.parse(text))).toEqual([
      { action: 'subscribe', robotIds: ['*'], telemetry: '1s' },
      { action: 'subscribe', robotIds: ['*'] },
    ]);
    socket.receive({ type: 'Subscribed', robotIds: ['*'] });
    await answerReads(api);
    socket.receive({ type: 'RobotTelemetry', robotId: 'lekiwi-A1', seq: 1, at: 't', data: telemetryAt('2026-12-01T10:00:09.000Z', { cpuPercent: 77 }) });
    env.frame();
    expect(store.getSnapshot().robots.get('lekiwi-A1')!.telemetry!.cpuPercent).toBe(77);
    // The next connection asks without the rate straight away.
    socket.drop();
    env.advance(10_000);
    await settle();
    env.lastSocket.open();
    expect(env.lastSocket.sent.map((text) => JSON.parse(text))).toEqual([{ action: 'subscribe', robotIds: ['*'] }]);
  });
});

describe('the fleet store: link state and reconnects', () => {
  it('goes stale STALE_AFTER_MS after the link dropped, by a timer, with no message needed', async () => {
    const { env, api, store } = start();
    const socket = await goLive(env);
    await answerReads(api);
    env.frame();
    socket.drop();
    env.frame();
    expect(store.getSnapshot().link.state).toBe('connecting');
    env.randomValue = 0.99; // long reconnect waits, so the link stays down
    env.advance(STALE_AFTER_MS - 1);
    env.frame();
    expect(store.getSnapshot().link.state).toBe('connecting');
    env.advance(1);
    env.frame();
    expect(store.getSnapshot().link).toEqual({ state: 'stale', since: STALE_AFTER_MS });
  });

  it('is stale when the first connection never succeeds', async () => {
    const { env, store } = start();
    await settle();
    env.advance(STALE_AFTER_MS);
    env.frame();
    expect(store.getSnapshot().link.state).toBe('stale');
  });

  it('reconnects with backoff and a fresh token, then re-reads the list and metrics and fills open timelines', async () => {
    const { env, api, store, tokens } = start();
    const socket = await goLive(env);
    await answerReads(api);
    env.frame();
    const timeline = store.timeline('lekiwi-A1');
    api.listEventsCalls[0]!.resolve({ items: [eventView(3), eventView(2), eventView(1)], nextCursor: null });
    await settle();

    env.randomValue = 0;
    socket.drop();
    env.advance(499);
    await settle();
    expect(env.sockets).toHaveLength(1);
    env.advance(1);
    await settle();
    expect(env.sockets).toHaveLength(2);
    expect(tokens()).toBe(2);
    expect(env.lastSocket.url).toBe(`${WS}?token=token-2`);
    // This one fails before opening: the next wait is longer (attempt 1: 0.5 … 1 s).
    env.randomValue = 0.9999;
    env.lastSocket.drop();
    env.advance(999);
    await settle();
    expect(env.sockets).toHaveLength(2);
    env.advance(1);
    await settle();
    expect(env.sockets).toHaveLength(3);

    const robotReads = api.robotsCalls.length;
    await goLive(env);
    expect(api.robotsCalls.length).toBe(robotReads + 1);
    expect(api.eventsAfterCalls.map((call) => call.args)).toEqual([['lekiwi-A1', 3]]);
    api.eventsAfterCalls[0]!.resolve([eventView(4)]);
    await answerReads(api, [robotView('lekiwi-A1', { lastSeq: 4, status: 'offline' }), robotView('lekiwi-A2')]);
    env.frame();
    expect(store.getSnapshot().link.state).toBe('live');
    expect(store.getSnapshot().robots.get('lekiwi-A1')!.status).toBe('offline');
    expect(timeline.getSnapshot().events.map((event) => event.seq)).toEqual([4, 3, 2, 1]);

    // Subscribed again: the attempt count starts over (0.5 s).
    env.randomValue = 0.9999;
    env.lastSocket.drop();
    env.advance(500);
    await settle();
    expect(env.sockets).toHaveLength(4);
  });

  it('feeds live events to the open timelines of their robot', async () => {
    const { env, api, store } = start();
    const socket = await goLive(env);
    await answerReads(api);
    const timeline = store.timeline('lekiwi-A1');
    api.listEventsCalls[0]!.resolve({ items: [eventView(1)], nextCursor: null });
    await settle();
    socket.receive({ type: 'AlertRaised', robotId: 'lekiwi-A1', seq: 2, at: '2026-12-01T10:00:02.000Z', data: {} });
    socket.receive({ type: 'AlertRaised', robotId: 'lekiwi-A2', seq: 9, at: '2026-12-01T10:00:02.000Z', data: {} });
    expect(timeline.getSnapshot().events.map((event) => event.seq)).toEqual([1]);
    env.frame();
    expect(timeline.getSnapshot().events.map((event) => event.seq)).toEqual([2, 1]);
    timeline.close();
    socket.receive({ type: 'AlertCleared', robotId: 'lekiwi-A1', seq: 3, at: '2026-12-01T10:00:03.000Z', data: {} });
    env.frame();
    expect(timeline.getSnapshot().events.map((event) => event.seq)).toEqual([2, 1]);
  });

  it('hands event listeners each frame batch once, by robot, however many messages came; none after their stop', async () => {
    const { env, api, store } = start();
    const socket = await goLive(env);
    await answerReads(api);
    env.frame();
    const batches: Array<Record<string, string[]>> = [];
    const stop = store.onEvents((events) =>
      batches.push(Object.fromEntries([...events].map(([robotId, list]) => [robotId, list.map((event) => `${event.type}#${event.seq}`)]))),
    );
    const data = { deploymentId: 'dep-01JE0000000000000000000000', jobId: 'j', version: '1.1.0', kind: 'deploy', batch: 0 };
    for (let seq = 2; seq <= 41; seq += 1) socket.receive({ type: 'RobotUpdateQueued', robotId: `lekiwi-A${seq % 2 ? 1 : 2}`, seq, at: 't', data });
    socket.receive({ type: 'RobotsUpdated', at: 't', robots: [robotView('lekiwi-A1', { lastSeq: 41 })] });
    expect(batches).toEqual([]);
    env.frame();
    expect(batches).toHaveLength(1);
    expect(batches[0]!['lekiwi-A1']).toHaveLength(20);
    expect(batches[0]!['lekiwi-A2']![0]).toBe('RobotUpdateQueued#2');
    // A frame with views only hands no events.
    socket.receive({ type: 'RobotsUpdated', at: 't', robots: [robotView('lekiwi-A2', { lastSeq: 40 })] });
    env.frame();
    expect(batches).toHaveLength(1);
    stop();
    socket.receive({ type: 'RobotUpdateStarted', robotId: 'lekiwi-A1', seq: 42, at: 't', data });
    env.frame();
    expect(batches).toHaveLength(1);
  });
});

describe('the fleet store: DeploymentChanged', () => {
  it('hands each DeploymentChanged to its listeners as it comes, touches no robot, and none after their stop', async () => {
    const { env, api, store, notified } = start();
    const socket = await goLive(env);
    await answerReads(api);
    env.frame();
    const before = notified();
    const seen: Array<[string, number]> = [];
    const stop = store.onDeploymentChanges((change) => seen.push([change.deploymentId, change.revision]));
    const change = (revision: number) => ({
      type: 'DeploymentChanged',
      deploymentId: 'dep-01JE0000000000000000000000',
      state: 'running',
      reason: null,
      counts: { targeted: 2, held: 0, pending: 0, inProgress: 1, succeeded: 1, failed: 0, rolledBack: 0, canceled: 0 },
      batches: [],
      updatedAt: 't',
      revision,
    });
    socket.receive(change(2));
    socket.receive(change(3));
    socket.receive({ type: 'DeploymentChanged', deploymentId: 'dep-01JE0000000000000000000000' }); // no revision: ignored
    expect(seen).toEqual([
      ['dep-01JE0000000000000000000000', 2],
      ['dep-01JE0000000000000000000000', 3],
    ]);
    env.frame();
    expect(notified()).toBe(before);
    expect(store.getSnapshot().robots.size).toBe(2);
    stop();
    socket.receive(change(4));
    expect(seen).toHaveLength(2);
  });
});

describe('the fleet store: reads it makes', () => {
  it('re-reads the metrics at most every METRICS_INTERVAL_MS while messages arrive', async () => {
    const { env, api } = start();
    const socket = await goLive(env);
    await answerReads(api);
    env.frame();
    const reads = api.metricsCalls.length;
    for (let second = 1; second <= 12; second += 1) {
      socket.receive({ type: 'RobotsUpdated', at: 'x', robots: [robotView('lekiwi-A1', { lastSeq: 1 + second })] });
      env.advance(1_000);
      await settle();
      api.metricsCalls[api.metricsCalls.length - 1]!.resolve(metrics(2));
      env.frame();
    }
    // 12 s of messages after the read at the ack: reads at 5 s and 10 s;
    expect(api.metricsCalls.length - reads).toBe(2);
    // then one at 15 s for the messages after the 10 s read, and none once they stop.
    env.advance(60_000);
    expect(api.metricsCalls.length - reads).toBe(3);
    expect(METRICS_INTERVAL_MS).toBe(5_000);
  });

  it('never fetches a robot per message; re-reads the list when a robot stays behind its events', async () => {
    const { env, api } = start();
    const socket = await goLive(env);
    await answerReads(api);
    env.frame();
    env.advance(10_000);
    await settle();
    const reads = api.robotsCalls.length;
    socket.receive({ type: 'RobotMarkedFailed', robotId: 'lekiwi-A1', seq: 2, at: 't', data: { reason: 'x', by: 'y' } });
    env.frame();
    env.advance(BEHIND_GRACE_MS - 1);
    expect(api.robotsCalls.length).toBe(reads);
    env.advance(1);
    expect(api.robotsCalls.length).toBe(reads + 1);

    // A RobotsUpdated within the grace makes the read unnecessary.
    api.robotsCalls[api.robotsCalls.length - 1]!.resolve([robotView('lekiwi-A1', { lastSeq: 2 }), robotView('lekiwi-A2')]);
    await settle();
    env.frame();
    env.advance(10_000);
    socket.receive({ type: 'RobotMarkedFailed', robotId: 'lekiwi-A2', seq: 2, at: 't', data: { reason: 'x', by: 'y' } });
    socket.receive({ type: 'RobotsUpdated', at: 't', robots: [robotView('lekiwi-A2', { lastSeq: 2, lifecycle: 'failed' })] });
    env.frame();
    env.advance(BEHIND_GRACE_MS * 5);
    expect(api.robotsCalls.length).toBe(reads + 1);
  });

  it('shows a failed read and tries again', async () => {
    const { env, api, store } = start();
    await goLive(env);
    api.robotsCalls[0]!.reject(new Error('GET /robots failed with 503: busy'));
    api.metricsCalls[0]!.resolve(metrics(0));
    await settle();
    env.frame();
    expect(store.getSnapshot()).toMatchObject({ loaded: false, error: 'Could not read the robots: GET /robots failed with 503: busy' });
    env.advance(5_000);
    await answerReads(api);
    env.frame();
    expect(store.getSnapshot()).toMatchObject({ loaded: true, error: null });
  });

  it('refresh() reads the list and metrics now', async () => {
    const { env, api, store } = start();
    await goLive(env);
    await answerReads(api);
    const refreshed = store.refresh();
    expect(api.robotsCalls).toHaveLength(2);
    await answerReads(api, [robotView('lekiwi-A1', { lastSeq: 9 })]);
    await refreshed;
    env.frame();
    expect(store.getSnapshot().robots.get('lekiwi-A1')!.lastSeq).toBe(9);
  });

  it('closes its socket and stops for good', async () => {
    const { env, api, store, notified } = start();
    const socket = await goLive(env);
    await answerReads(api);
    store.close();
    expect(socket.closed).toBe(true);
    env.advance(60_000);
    env.frame();
    await settle();
    expect(env.sockets).toHaveLength(1);
    expect(notified()).toBe(0);
  });
});
