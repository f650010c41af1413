import { performance } from 'node:perf_hooks';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AgentEvent } from '../../schemas/device.js';
import { createJsonLog } from '../../agent/adapters/json-log.js';
import { createTeleoperationProbe, type TeleoperationProbe } from '../../agent/adapters/teleoperation-probe.js';
import { teleoperationConfig, type TeleoperationConfig } from '../../agent/core/teleoperation-config.js';
import { createTeleoperationScorer } from '../../agent/core/teleoperation-scorer.js';
import { startTeleoperationMonitor, type TeleoperationMonitor } from '../../agent/teleoperation-monitor.js';
import {
  connectOperator,
  connectViewer,
  watching,
  spawnLocalTeleop,
  spawnOperatorProcess,
  startHostStandIn,
  type HostStandIn,
} from '../support/lekiwi-stand-ins.js';

/**
 * The teleoperation monitor with its real probe (/proc/net/tcp, the sock_diag co-process, /proc scanning) on this
 * machine, watching a LeKiwi host stand-in (a child process with real ZeroMQ sockets on free loopback ports), driven
 * by stand-in operators. Each scenario asserts the exact events reported.
 */

interface Reported {
  readonly event: AgentEvent;
  /** performance.now() when the monitor handed it to report(). */
  readonly at: number;
}

interface Watch {
  readonly monitor: TeleoperationMonitor;
  readonly probe: TeleoperationProbe;
  readonly reported: Reported[];
  readonly warnings: string[];
  types(): string[];
  /** Waits until the monitor has taken `count` more readings. */
  ticks(count: number): Promise<void>;
}

let host: HostStandIn;
let config: TeleoperationConfig;
const cleanups: (() => unknown)[] = [];

beforeAll(async () => {
  host = await startHostStandIn();
  config = teleoperationConfig(await watching(host));
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

afterAll(async () => {
  await host?.stop();
});

async function watch(options: { python?: string } = {}): Promise<Watch> {
  const warnings: string[] = [];
  const log = createJsonLog({
    level: 'warn',
    write: (line) => void warnings.push(line),
  });
  const probe = await createTeleoperationProbe({ config, log, ...options });
  const reported: Reported[] = [];
  const monitor = startTeleoperationMonitor({
    probe,
    scorer: createTeleoperationScorer(config),
    log,
    report: async (event) => {
      reported.push({ event: AgentEvent.parse(event), at: performance.now() });
    },
  });
  cleanups.push(() => monitor.stop());
  return {
    monitor,
    probe,
    reported,
    warnings,
    types: () => reported.map(({ event }) => event.type),
    async ticks(count) {
      const target = monitor.state().ticks + count;
      await expect.poll(() => monitor.state().ticks, { message: `${count} readings` }).toBeGreaterThanOrEqual(target);
    },
  };
}

describe('teleoperation detection against a LeKiwi host stand-in (real ZeroMQ on loopback)', () => {
  it('reports nothing while the host runs and nobody is connected', async () => {
    const { monitor, reported, ticks, probe } = await watch();
    expect(probe.mode).toBe('counters');

    await ticks(30);

    expect(monitor.state().decision.signals).toContain('host-process');
    expect(monitor.state().decision.signals).not.toContain('command-peer');
    expect(reported).toEqual([]);
  });

  it('reports nothing while an operator is connected (and watching) but sends no action', async () => {
    const { monitor, reported, ticks } = await watch();
    const operator = connectOperator({ commandPort: host.commandPort, observationPort: host.observationPort });
    cleanups.push(() => operator.close());

    await expect.poll(() => monitor.state().decision.signals, { message: 'the stream seen' }).toContain('observation-stream');
    expect(monitor.state().decision.signals).toEqual(
      expect.arrayContaining(['command-peer', 'observation-stream', 'host-process']),
    );
    await ticks(45);

    expect(operator.observations).toBeGreaterThan(0);
    expect(reported).toEqual([]);
  });

  it('reports a start after the first action (latency: npm run bench:teleop), and an idle stop once the operator stops sending', async () => {
    const { reported, types } = await watch();
    const operator = connectOperator({ commandPort: host.commandPort, observationPort: host.observationPort });
    cleanups.push(() => operator.close());
    await expect.poll(() => operator.observations, { message: 'the operator connected' }).toBeGreaterThan(0);

    const firstActionAt = await operator.startDriving(30);
    await expect.poll(() => reported.length, { message: 'TeleoperationStarted' }).toBeGreaterThanOrEqual(1);
    expect(reported[0]!.at, 'a start is reported only once someone drives').toBeGreaterThanOrEqual(firstActionAt);
    const started = reported[0]!.event;
    expect(started.type).toBe('TeleoperationStarted');
    if (started.type !== 'TeleoperationStarted') return;
    expect(started.data.operatorAddress).toBe('127.0.0.1');
    expect(started.data.signals).toEqual(expect.arrayContaining(['actions', 'command-peer', 'host-process']));
    expect(started.data.score).toBeGreaterThanOrEqual(0.9);

    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(types()).toEqual(['TeleoperationStarted']);
    const lastActionAt = operator.stopDriving();
    await expect.poll(() => reported.length, { message: 'TeleoperationStopped' }).toBeGreaterThanOrEqual(2);
    expect(reported[1]!.at, 'a stop is reported only after the last action').toBeGreaterThan(lastActionAt);
    expect(reported[1]!.event).toMatchObject({ type: 'TeleoperationStopped', data: { reason: 'idle' } });
    expect(types()).toEqual(['TeleoperationStarted', 'TeleoperationStopped']);
  });

  it('reports a stop when the operator vanishes (SIGKILL) mid-session', async () => {
    const { reported, types } = await watch();
    const operator = await spawnOperatorProcess({ commandPort: host.commandPort });
    cleanups.push(() => operator.stop());
    await expect.poll(() => reported.length, { message: 'TeleoperationStarted' }).toBeGreaterThanOrEqual(1);
    expect(reported[0]!.event).toMatchObject({ type: 'TeleoperationStarted', data: { operatorAddress: '127.0.0.1' } });

    const killedAt = performance.now();
    operator.child.kill('SIGKILL');
    await expect.poll(() => reported.length, { message: 'TeleoperationStopped' }).toBeGreaterThanOrEqual(2);

    const stopped = reported[1]!.event;
    expect(stopped.type).toBe('TeleoperationStopped');
    if (stopped.type !== 'TeleoperationStopped') return;
    expect(['idle', 'peer-gone']).toContain(stopped.data.reason);
    expect(stopped.data.durationMs).toBeGreaterThan(0);
    expect(reported[1]!.at).toBeGreaterThan(killedAt);
    expect(types()).toEqual(['TeleoperationStarted', 'TeleoperationStopped']);
  });

  it('reports nothing for a viewer that only pulls the video', async () => {
    const { monitor, reported, ticks } = await watch();
    const viewer = connectViewer({ observationPort: host.observationPort });
    cleanups.push(() => viewer.close());

    await expect.poll(() => monitor.state().decision.signals, { message: 'the stream seen' }).toContain('observation-stream');
    await ticks(45);

    expect(viewer.frames).toBeGreaterThan(10);
    expect(monitor.state().decision.signals).not.toContain('command-peer');
    expect(reported).toEqual([]);
  });

  it('reports an XLeRobot keyboard teleop program as local driving, and its exit as the stop', async () => {
    const { reported, types } = await watch();
    const teleop = await spawnLocalTeleop('4_xlerobot_teleop_keyboard.py');
    cleanups.push(() => teleop.stop());

    await expect.poll(() => reported.length, { message: 'TeleoperationStarted' }).toBeGreaterThanOrEqual(1);
    expect(reported[0]!.event).toMatchObject({
      type: 'TeleoperationStarted',
      data: { operatorAddress: 'local', signals: expect.arrayContaining(['local-teleop:keyboard']) },
    });

    await teleop.stop();
    await expect.poll(() => reported.length, { message: 'TeleoperationStopped' }).toBeGreaterThanOrEqual(2);
    expect(reported[1]!.event).toMatchObject({ type: 'TeleoperationStopped', data: { reason: 'process-exited' } });
    expect(types()).toEqual(['TeleoperationStarted', 'TeleoperationStopped']);
  });

  it('without python3 falls back to peers only: says so once, and never sees actions', async () => {
    const { monitor, reported, warnings, probe, ticks } = await watch({ python: '/nonexistent/python3' });
    expect(probe.mode).toBe('peers-only');
    const operator = connectOperator({ commandPort: host.commandPort, observationPort: host.observationPort });
    cleanups.push(() => operator.close());

    await operator.startDriving(30);
    await expect.poll(() => monitor.state().decision.signals, { message: 'the operator seen' }).toContain('command-peer');
    await ticks(30);

    expect(reported).toEqual([]);
    const fallback = warnings.filter((line) => line.includes('falls back to peers only'));
    expect(fallback).toHaveLength(1);
  });
});
