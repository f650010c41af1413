/**
 * `npm run bench:teleop [-- --cycles 200 --drive-ms 300]`: teleoperation detection against a LeKiwi host stand-in
 * (child process, real ZeroMQ on free loopback ports). The agent side is the real monitor and probe (/proc/net/tcp,
 * the sock_diag co-process, /proc scanning) in a child process of its own, so its CPU and memory can be measured
 * apart from the stand-ins. Each cycle an operator connects, drives at 30 Hz for --drive-ms, stops, waits for the
 * stop, and disconnects. Printed: detection latency (first action sent → TeleoperationStarted handed to the queue)
 * p50/p99/max, stop latency (last action → TeleoperationStopped), false starts, missed sessions, and the agent side's
 * CPU (% of one core, monitor process + co-process, from /proc/<pid>/stat over the measured run) and RSS, plus the
 * idle cost (host running, nobody connected). Aim: p99 ≤ 100 ms, zero false/missed, < 1 % of a core.
 *
 * `--dashboard`: the same cycles end to end on the local cloud instead: the real agent process (`agent/main.ts`, its
 * monitor watching the stand-in's ports) connected over MQTT/mTLS, and a WebSocket client on the live feed; prints
 * first action → `TeleoperationStarted` on the WebSocket p50/p99/max (aim ≤ 200 ms) and the same for the stop.
 *
 * Times cross processes as performance.timeOrigin + performance.now() (epoch ms, sub-ms resolution).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { createJsonLog } from '../agent/adapters/json-log.js';
import { createTeleoperationProbe } from '../agent/adapters/teleoperation-probe.js';
import { teleoperationConfig, type TeleoperationConfig } from '../agent/core/teleoperation-config.js';
import { createTeleoperationScorer } from '../agent/core/teleoperation-scorer.js';
import { startTeleoperationMonitor } from '../agent/teleoperation-monitor.js';
import { waitFor } from '../test/support/local-cloud-process.js';
import {
  connectOperator,
  watching,
  sleep,
  startHostStandIn,
} from '../test/support/lekiwi-stand-ins.js';

const { values } = parseArgs({
  options: {
    cycles: { type: 'string', default: '200' },
    'drive-ms': { type: 'string', default: '300' },
    'idle-ms': { type: 'string', default: '10000' },
    'tick-ms': { type: 'string', default: '33' },
    'idle-tick-ms': { type: 'string', default: '100' },
    dashboard: { type: 'boolean', default: false },
    // internal: run as the agent side
    'agent-side': { type: 'string' },
  },
});

const epochNow = () => performance.timeOrigin + performance.now();
/** Clock ticks per second in /proc/<pid>/stat (USER_HZ: 100 on Linux, whatever the kernel's HZ). */
const USER_HZ = 100;

if (values['agent-side'] !== undefined) {
  await runAgentSide(JSON.parse(values['agent-side']) as { config: TeleoperationConfig; tickMs: number; idleTickMs: number });
} else if (values.dashboard) {
  await runDashboardBench();
} else {
  await runBench();
}

/** The agent's half: the real probe and monitor; events go to stdout as JSON lines; stdin closing stops it. */
async function runAgentSide(options: { config: TeleoperationConfig; tickMs: number; idleTickMs: number }): Promise<void> {
  const log = createJsonLog({ level: 'warn', write: (line) => void process.stderr.write(line) });
  const probe = await createTeleoperationProbe({ config: options.config, log });
  const monitor = startTeleoperationMonitor({
    probe,
    scorer: createTeleoperationScorer(options.config),
    log,
    tickMs: options.tickMs,
    idleTickMs: options.idleTickMs,
    report: async (event) => {
      process.stdout.write(`${JSON.stringify({ at: epochNow(), event })}\n`);
    },
  });
  process.stdout.write(`${JSON.stringify({ ready: true, mode: probe.mode, counterPid: probe.counterPid })}\n`);
  process.stdin.resume();
  process.stdin.on('data', (chunk: Buffer) => {
    if (chunk.includes('stats')) {
      process.stdout.write(`${JSON.stringify({ stats: { ticks: monitor.state().ticks, discoveries: probe.discoveries, listings: probe.processListings } })}\n`);
    }
  });
  process.stdin.on('end', () => {
    void monitor.stop().then(() => {
      process.stdout.write(`${JSON.stringify({ done: true, ticks: monitor.state().ticks, failedTicks: monitor.state().failedTicks })}\n`);
      process.exit(0);
    });
  });
}

interface Stats {
  readonly ticks: number;
  readonly discoveries: number;
  readonly listings: number;
}

interface Reported {
  readonly at: number;
  readonly event: { type: string; data: Record<string, unknown> };
}

async function runBench(): Promise<void> {
  const cycles = Number(values.cycles);
  const driveMs = Number(values['drive-ms']);
  const idleMs = Number(values['idle-ms']);
  const tickMs = Number(values['tick-ms']);
  const idleTickMs = Number(values['idle-tick-ms']);
  if (![cycles, driveMs, idleMs, tickMs, idleTickMs].every((n) => Number.isInteger(n) && n > 0) || idleTickMs < tickMs) {
    process.stderr.write('--cycles, --drive-ms, --idle-ms, --tick-ms, --idle-tick-ms: positive whole numbers, idle ≥ tick\n');
    process.exit(2);
  }
  const host = await startHostStandIn();
  const config = teleoperationConfig(await watching(host));
  const agent = spawn(process.execPath, ['--import', 'tsx', 'bench/teleop.ts', '--agent-side', JSON.stringify({ config, tickMs, idleTickMs })], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const reported: Reported[] = [];
  const stats: Stats[] = [];
  const askStats = async (): Promise<Stats> => {
    const count = stats.length;
    agent.stdin!.write('stats\n');
    await waitFor(() => stats.length > count, { what: 'the agent side stats', timeoutMs: 5_000 });
    return stats.at(-1)!;
  };
  let ready: { mode: string; counterPid?: number } | undefined;
  let done = false;
  readLines(agent, (line) => {
    const message = JSON.parse(line) as { ready?: boolean; mode: string; counterPid?: number; done?: boolean } & Partial<Reported>;
    if (message.ready) ready = message;
    else if ('stats' in message) stats.push(message.stats as Stats);
    else if (message.done) done = true;
    else if (message.event) reported.push(message as Reported);
  });
  try {
    await waitFor(() => ready !== undefined, { what: 'the agent side ready', timeoutMs: 30_000 });
    const pids = [agent.pid!, ...(ready!.counterPid ? [ready!.counterPid] : [])];
    process.stdout.write(
      `Teleoperation bench: ${cycles} cycles of ${driveMs} ms driving, tick ${tickMs} ms (idle ${idleTickMs} ms), ` +
        `probe mode ${ready!.mode}\n`,
    );
    await sleep(1_000); // past the agent side's start-up

    // Idle cost: the host streams to nobody, nobody connected.
    const idleStats = await askStats();
    const idleStart = cpuOf(pids);
    const idleWall = epochNow();
    await sleep(idleMs);
    const idleCpu = percentOfCore(idleStart, cpuOf(pids), epochNow() - idleWall);
    const idleEnd = await askStats();
    const idleFalse = reported.length;

    const startLatencies: number[] = [];
    const stopLatencies: number[] = [];
    let missed = 0;
    let falseStarts = idleFalse;
    let unexpected = 0;
    const runStart = cpuOf(pids);
    const runWall = epochNow();
    for (let cycle = 0; cycle < cycles; cycle += 1) {
      const before = reported.length;
      const operator = connectOperator({ commandPort: host.commandPort, observationPort: host.observationPort });
      await waitFor(() => operator.observations > 0, { what: 'the operator connected', timeoutMs: 5_000 });
      await sleep(100);
      if (reported.length !== before) falseStarts += reported.length - before; // connecting is not driving
      const firstAction = performance.timeOrigin + (await operator.startDriving(30));
      const started = await waitUntil(() => reported.slice(before).find((r) => r.event.type === 'TeleoperationStarted'), 2_000);
      await sleep(Math.max(0, firstAction + driveMs - epochNow()));
      const lastAction = performance.timeOrigin + operator.stopDriving();
      if (started) startLatencies.push(started.at - firstAction);
      else missed += 1;
      const stopped = await waitUntil(() => reported.slice(before).find((r) => r.event.type === 'TeleoperationStopped'), 3_000);
      if (stopped) stopLatencies.push(stopped.at - lastAction);
      operator.close();
      await sleep(150);
      const events = reported.slice(before).map((r) => r.event.type);
      if (events.join() !== (started ? 'TeleoperationStarted,TeleoperationStopped' : '')) unexpected += 1;
      if ((cycle + 1) % 50 === 0) process.stdout.write(`  ${cycle + 1}/${cycles} cycles\n`);
    }
    const runCpu = percentOfCore(runStart, cpuOf(pids), epochNow() - runWall);
    const runEnd = await askStats();
    const rss = pids.map((pid) => rssOf(pid));

    startLatencies.sort((a, b) => a - b);
    stopLatencies.sort((a, b) => a - b);
    const line = (name: string, sorted: number[]) =>
      `${name}: p50 ${fmt(percentile(sorted, 50))}  p99 ${fmt(percentile(sorted, 99))}  max ${fmt(sorted.at(-1) ?? NaN)}  (n=${sorted.length})\n`;
    process.stdout.write(line('detection latency (first action → TeleoperationStarted)', startLatencies));
    process.stdout.write(line('stop latency (last action → TeleoperationStopped)', stopLatencies));
    process.stdout.write(`false starts: ${falseStarts}   missed sessions: ${missed}   cycles with unexpected events: ${unexpected}\n`);
    process.stdout.write(
      `agent-side CPU, % of one core: idle ${idleCpu.total.toFixed(2)} % (monitor ${idleCpu.byPid[0]!.toFixed(2)} %, ` +
        `co-process ${(idleCpu.byPid[1] ?? 0).toFixed(2)} %); while cycling ${runCpu.total.toFixed(2)} % ` +
        `(monitor ${runCpu.byPid[0]!.toFixed(2)} %, co-process ${(runCpu.byPid[1] ?? 0).toFixed(2)} %)\n`,
    );
    const counts = (from: Stats, to: Stats) =>
      `${to.ticks - from.ticks} readings, ${to.discoveries - from.discoveries} socket discoveries, ` +
      `${to.listings - from.listings} /proc listings`;
    process.stdout.write(`idle: ${counts(idleStats, idleEnd)}; cycling: ${counts(idleEnd, runEnd)}\n`);
    process.stdout.write(
      `agent-side RSS: monitor process ${rss[0]} MB (node + tsx + the agent's modules), co-process ${rss[1] ?? 'n/a'} MB\n`,
    );
    const p99 = percentile(startLatencies, 99);
    const ok = p99 <= 100 && falseStarts === 0 && missed === 0;
    process.stdout.write(`${ok ? 'PASS' : 'MISS'}: aim p99 ≤ 100 ms, zero false starts and missed sessions\n`);
  } finally {
    agent.stdin!.end();
    await waitFor(() => done || agent.exitCode !== null, { what: 'the agent side stopped', timeoutMs: 10_000 }).catch(() => agent.kill('SIGKILL'));
    await host.stop();
  }
}

/** First action → the live feed's TeleoperationStarted, through the agent process, IoT rule, event log and stream. */
async function runDashboardBench(): Promise<void> {
  const cycles = Number(values.cycles);
  const driveMs = Number(values['drive-ms']);
  const { connectLiveClient, freePorts, freshStateDir, issueCertificate, removeStateDir, startAgentProcess, startCloudProcess } =
    await import('../test/support/local-cloud-process.js');
  const { readFile, writeFile } = await import('node:fs/promises');
  const stateDir = await freshStateDir();
  const cloud = await startCloudProcess({ stateDir, ports: await freePorts(), minKeepAliveSeconds: 30 });
  const host = await startHostStandIn();
  const robotId = 'lekiwi-TELE0001';
  const configFile = await issueCertificate(stateDir, robotId, 30);
  const config = JSON.parse(await readFile(configFile, 'utf8')) as Record<string, unknown>;
  config.teleoperation = await watching(host);
  await writeFile(configFile, JSON.stringify(config, null, 2));
  const live = await connectLiveClient(cloud.endpoints, [robotId]);
  const arrivals: { at: number; type: string }[] = [];
  live.onMessage((message) => {
    if (typeof message.type === 'string' && message.type.startsWith('Teleoperation')) arrivals.push({ at: epochNow(), type: message.type });
  });
  const agent = startAgentProcess(configFile, { LOG_LEVEL: 'warn' });
  try {
    await live.waitFor((message) => message.type === 'RobotConnected', 'the agent to connect', 60_000);
    process.stdout.write(`Dashboard bench: ${cycles} cycles of ${driveMs} ms driving, agent process → local cloud → WebSocket\n`);
    await sleep(1_000);
    const starts: number[] = [];
    const stops: number[] = [];
    let missed = 0;
    let falseStarts = arrivals.length;
    for (let cycle = 0; cycle < cycles; cycle += 1) {
      const before = arrivals.length;
      const operator = connectOperator({ commandPort: host.commandPort, observationPort: host.observationPort });
      await waitFor(() => operator.observations > 0, { what: 'the operator connected', timeoutMs: 5_000 });
      await sleep(100);
      falseStarts += arrivals.length - before;
      const mark = arrivals.length;
      const firstAction = performance.timeOrigin + (await operator.startDriving(30));
      const started = await waitUntil(() => arrivals.slice(mark).find((a) => a.type === 'TeleoperationStarted'), 3_000);
      await sleep(Math.max(0, firstAction + driveMs - epochNow()));
      const lastAction = performance.timeOrigin + operator.stopDriving();
      if (started) starts.push(started.at - firstAction);
      else missed += 1;
      const stopped = await waitUntil(() => arrivals.slice(mark).find((a) => a.type === 'TeleoperationStopped'), 4_000);
      if (stopped) stops.push(stopped.at - lastAction);
      operator.close();
      await sleep(150);
      if ((cycle + 1) % 50 === 0) process.stdout.write(`  ${cycle + 1}/${cycles} cycles\n`);
    }
    starts.sort((a, b) => a - b);
    stops.sort((a, b) => a - b);
    const line = (name: string, sorted: number[]) =>
      `${name}: p50 ${fmt(percentile(sorted, 50))}  p99 ${fmt(percentile(sorted, 99))}  max ${fmt(sorted.at(-1) ?? NaN)}  (n=${sorted.length})\n`;
    process.stdout.write(line('first action → TeleoperationStarted on the WebSocket', starts));
    process.stdout.write(line('last action → TeleoperationStopped on the WebSocket', stops));
    process.stdout.write(`false starts: ${falseStarts}   missed sessions: ${missed}\n`);
    const ok = percentile(starts, 99) <= 200 && falseStarts === 0 && missed === 0;
    process.stdout.write(`${ok ? 'PASS' : 'MISS'}: aim p99 ≤ 200 ms to the dashboard, zero false starts and missed sessions\n`);
  } finally {
    live.close();
    agent.child.kill('SIGTERM');
    await agent.exited;
    await host.stop();
    await cloud.stop();
    await removeStateDir(stateDir);
  }
}

function readLines(child: ChildProcess, onLine: (line: string) => void): void {
  let buffered = '';
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (chunk: string) => {
    buffered += chunk;
    let newline = buffered.indexOf('\n');
    while (newline >= 0) {
      onLine(buffered.slice(0, newline));
      buffered = buffered.slice(newline + 1);
      newline = buffered.indexOf('\n');
    }
  });
}

async function waitUntil<T>(find: () => T | undefined, timeoutMs: number): Promise<T | undefined> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const found = find();
    if (found !== undefined || performance.now() > deadline) return found;
    await sleep(2);
  }
}

/** utime + stime in clock ticks (USER_HZ, 100 on Linux) per pid, from /proc/<pid>/stat. */
function cpuOf(pids: readonly number[]): number[] {
  return pids.map((pid) => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return Number(fields[11]) + Number(fields[12]);
    } catch {
      return Number.NaN;
    }
  });
}

function percentOfCore(before: number[], after: number[], wallMs: number): { total: number; byPid: number[] } {
  const byPid = before.map((ticks, index) => (((after[index]! - ticks) * 1000) / USER_HZ / wallMs) * 100);
  return { total: byPid.reduce((sum, value) => sum + value, 0), byPid };
}

function rssOf(pid: number): string {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]);
    return (kb / 1024).toFixed(1);
  } catch {
    return 'n/a';
  }
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
}

function fmt(value: number): string {
  return `${value.toFixed(1)} ms`;
}
