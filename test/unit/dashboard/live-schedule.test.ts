import { describe, expect, it } from 'vitest';
import { nextRunAt, reconnectDelay, RECONNECT_MAX_MS, RECONNECT_MIN_MS } from '../../../dashboard/src/live/schedule.js';
import { ThrottledTask } from '../../../dashboard/src/live/throttled-task.js';
import { FakeLiveEnvironment, settle } from './fake-live-env.js';

describe('reconnect delay', () => {
  it('stays within 0.5 s … 10 s, its ceiling doubling per attempt', () => {
    expect(reconnectDelay(0, 0)).toBe(RECONNECT_MIN_MS);
    expect(reconnectDelay(0, 0.999)).toBe(RECONNECT_MIN_MS);
    expect(reconnectDelay(1, 0.9999)).toBe(1_000);
    expect(reconnectDelay(3, 0.9999)).toBe(4_000);
    expect(reconnectDelay(3, 0.5)).toBe(2_250);
    expect(reconnectDelay(30, 0.99999)).toBe(RECONNECT_MAX_MS);
    for (let attempt = 0; attempt < 40; attempt += 1) {
      for (const random of [0, 0.25, 0.5, 0.9999]) {
        const delay = reconnectDelay(attempt, random);
        expect(delay).toBeGreaterThanOrEqual(RECONNECT_MIN_MS);
        expect(delay).toBeLessThanOrEqual(RECONNECT_MAX_MS);
      }
    }
  });

  it('spreads pages that dropped together (jitter)', () => {
    const delays = new Set([0.1, 0.3, 0.5, 0.7, 0.9].map((random) => reconnectDelay(5, random)));
    expect(delays.size).toBe(5);
  });
});

describe('throttled task', () => {
  it('runs at once the first time, then at most once per interval, serving requests made meanwhile once', async () => {
    const env = new FakeLiveEnvironment();
    const runs: number[] = [];
    const task = new ThrottledTask(async () => void runs.push(env.time), 5_000, env);
    task.request();
    env.advance(0);
    await settle();
    expect(runs).toEqual([0]);
    env.advance(1_000);
    task.request();
    task.request();
    task.request();
    env.advance(3_999);
    await settle();
    expect(runs).toEqual([0]);
    env.advance(1);
    await settle();
    expect(runs).toEqual([0, 5_000]);
    env.advance(20_000);
    await settle();
    expect(runs).toEqual([0, 5_000]);
    expect(nextRunAt(5_000, 6_000, 5_000)).toBe(10_000);
    expect(nextRunAt(null, 6_000, 5_000)).toBe(6_000);
  });

  it('never overlaps runs; runNow during a run runs once more right after it', async () => {
    const env = new FakeLiveEnvironment();
    const finish: Array<() => void> = [];
    let running = 0;
    let most = 0;
    let runs = 0;
    const task = new ThrottledTask(
      () =>
        new Promise<void>((resolve) => {
          runs += 1;
          running += 1;
          most = Math.max(most, running);
          finish.push(() => {
            running -= 1;
            resolve();
          });
        }),
      5_000,
      env,
    );
    const first = task.runNow();
    const second = task.runNow();
    task.request();
    expect(runs).toBe(1);
    finish.shift()!();
    await first;
    await settle();
    expect(runs).toBe(2); // right after, not 5 s later
    finish.shift()!();
    await second;
    expect(most).toBe(1);
  });

  it('does nothing once stopped', async () => {
    const env = new FakeLiveEnvironment();
    let runs = 0;
    const task = new ThrottledTask(async () => void (runs += 1), 5_000, env);
    task.request();
    task.stop();
    env.advance(10_000);
    await task.runNow();
    expect(runs).toBe(0);
  });
});
