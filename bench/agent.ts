/**
 * `npm run bench:agent [-- --minutes 5] [--drive]`: the edge agent's footprint, as it ships. agent/main.ts is bundled
 * by esbuild (ESM, platform node, aws-crt left external: its native binding is loaded from a computed path) into a
 * temp dir with sock_diag.py beside it, and run with plain `node` against the local cloud (its own process, as with
 * `npm start`) with a certificate from `npm run cert`, telemetry on and the teleoperation monitor on, as configured
 * by default. `--drive` also runs a LeKiwi host stand-in and an operator sending actions at 30 Hz for the whole run,
 * with the agent watching their ports.
 *
 * Sampled every second from /proc: VmRSS, VmHWM, RssAnon, RssFile (status) and utime+stime (stat) of the agent and
 * of its child processes (the sock_diag.py co-process). Bytes sent are the TCP payload bytes (TLS records included,
 * TCP/IP headers not) of the agent's socket to the MQTT port, from the kernel's `bytes_sent` counter (`ss -tin`),
 * read when the measured window starts and when it ends. The window starts once the link is up and the agent has
 * settled (10 s), so the start-up's TLS handshake and first sample are reported apart from the steady state.
 * Aims: peak RSS ≤ 50 MB, CPU ≤ 1 % of one core, ≤ 1 KB/s sent. `--minutes 1` is a quick look; the figure is 5.
 */
import { spawn, execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs, promisify } from 'node:util';
import { build } from 'esbuild';
import {
  freePorts,
  freshStateDir,
  getJson,
  issueCertificate,
  removeStateDir,
  ROOT,
  startCloudProcess,
  waitFor,
} from '../test/support/local-cloud-process.js';

const THING = 'lekiwi-BENCH01';
const SETTLE_MS = 10_000;
const CLOCK_TICKS_PER_SECOND = 100; // getconf CLK_TCK on Linux
const AIMS = { rssMb: 50, cpuPercent: 1, bytesPerSecond: 1024 } as const;

const USAGE = `Usage: npm run bench:agent -- [--minutes 5] [--drive | --no-teleoperation]

  --minutes N         how long to measure once the agent is connected (default 5; 1 gives a quick look, not the figure)
  --drive             run a LeKiwi host stand-in and an operator at 30 Hz during the run (teleoperation detected)
  --no-teleoperation  the agent without its teleoperation monitor (teleoperation.enabled false): MQTT and telemetry only`;

let values;
try {
  ({ values } = parseArgs({
    options: {
      minutes: { type: 'string', default: '5' },
      drive: { type: 'boolean', default: false },
      'no-teleoperation': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  }));
} catch (error) {
  process.stderr.write(`${(error as Error).message}\n\n${USAGE}\n`);
  process.exit(2);
}
if (values.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}
const minutes = Number(values.minutes);
if (!Number.isFinite(minutes) || minutes < 1 || minutes > 120) {
  process.stderr.write(`--minutes must be a number from 1 to 120 (5 for the real figure)\n\n${USAGE}\n`);
  process.exit(2);
}
const drive = values.drive === true;
const teleoperationOn = values['no-teleoperation'] !== true;
if (drive && !teleoperationOn) {
  process.stderr.write(`--drive needs the teleoperation monitor; leave out --no-teleoperation\n\n${USAGE}\n`);
  process.exit(2);
}

// ---- /proc readings.

interface ProcessSample {
  readonly rssKb: number;
  readonly hwmKb: number;
  readonly anonKb: number;
  readonly fileKb: number;
  readonly cpuTicks: number;
}

async function sampleProcess(pid: number): Promise<ProcessSample | undefined> {
  try {
    const [status, statLine] = await Promise.all([
      readFile(`/proc/${pid}/status`, 'utf8'),
      readFile(`/proc/${pid}/stat`, 'utf8'),
    ]);
    const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    // Fields after the command name (which may hold spaces) start at field 3; utime and stime are fields 14 and 15.
    const after = statLine.slice(statLine.lastIndexOf(')') + 2).split(' ');
    return {
      rssKb: kb('VmRSS'),
      hwmKb: kb('VmHWM'),
      anonKb: kb('RssAnon'),
      fileKb: kb('RssFile'),
      cpuTicks: Number(after[11]) + Number(after[12]),
    };
  } catch {
    return undefined; // gone
  }
}

/** Every descendant of `pid` (the co-process and anything it starts). */
async function descendants(pid: number): Promise<number[]> {
  const found: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const parent = queue.shift() as number;
    const tasks = await readdir(`/proc/${parent}/task`).catch(() => [] as string[]);
    for (const task of tasks) {
      const text = await readFile(`/proc/${parent}/task/${task}/children`, 'utf8').catch(() => '');
      for (const child of text.split(' ').filter(Boolean).map(Number)) {
        found.push(child);
        queue.push(child);
      }
    }
  }
  return found;
}

/** The agent's established TCP sockets to the MQTT port, with the kernel's byte counters. */
async function mqttSocketCounters(pid: number, port: number): Promise<{ bytesSent: number; bytesReceived: number; sockets: number }> {
  const { stdout } = await promisify(execFile)('ss', ['-tinpH', 'state', 'established', `( dport = :${port} )`]);
  const lines = stdout.split('\n');
  let bytesSent = 0;
  let bytesReceived = 0;
  let sockets = 0;
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i]!.includes(`pid=${pid},`)) continue;
    const info = `${lines[i]} ${lines[i + 1] ?? ''}`;
    sockets += 1;
    bytesSent += Number(/bytes_sent:(\d+)/.exec(info)?.[1] ?? 0);
    bytesReceived += Number(/bytes_received:(\d+)/.exec(info)?.[1] ?? 0);
  }
  return { bytesSent, bytesReceived, sockets };
}

// ---- Formatting.

const mb = (kb: number) => `${(kb / 1024).toFixed(1)} MB`;
const verdict = (ok: boolean) => (ok ? 'within the aim' : 'OVER the aim');

// ---- The run.

const work = await mkdtemp(join(tmpdir(), 'heartbeat-bench-agent-'));
const stateDir = await freshStateDir();
const cleanups: (() => Promise<unknown>)[] = [];
let exitCode = 0;
try {
  // 1. The bundle, laid out as shipped: <dir>/agent/main.mjs, sock_diag.py beside it, package.json one level up.
  const bundleDir = join(work, 'agent');
  await mkdir(bundleDir, { recursive: true });
  const bundling = performance.now();
  await build({
    entryPoints: [join(ROOT, 'agent/main.ts')],
    outfile: join(bundleDir, 'main.mjs'),
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    minify: true,
    // aws-crt loads its native binding from a path it computes at run time: it stays a package on disk.
    external: ['aws-crt', 'aws-crt/*'],
    banner: { js: "import { createRequire as __agentRequire } from 'node:module'; const require = __agentRequire(import.meta.url);" },
    logLevel: 'warning',
  });
  const bundleBytes = (await stat(join(bundleDir, 'main.mjs'))).size;
  await copyFile(join(ROOT, 'agent/adapters/sock_diag.py'), join(bundleDir, 'sock_diag.py')).catch(() => undefined);
  const version = (JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  await writeFile(join(work, 'package.json'), JSON.stringify({ name: 'lekiwi-heartbeat-agent', version, type: 'module' }));
  await symlink(join(ROOT, 'node_modules'), join(work, 'node_modules'), 'dir');
  process.stdout.write(
    `Bundled agent/main.ts → ${join(bundleDir, 'main.mjs')} (${(bundleBytes / 1024).toFixed(0)} KB, ${((performance.now() - bundling) / 1000).toFixed(1)} s; aws-crt external)\n`,
  );

  // 2. The local cloud and a certificate.
  const cloud = await startCloudProcess({ stateDir, ports: await freePorts(), minKeepAliveSeconds: 30 });
  cleanups.push(() => cloud.stop());
  const configFile = await issueCertificate(stateDir, THING, 30);
  const config = JSON.parse(await readFile(configFile, 'utf8')) as Record<string, unknown>;

  // 3. --drive: a LeKiwi host and an operator on free ports; the agent watches those ports.
  let driving: import('../test/support/lekiwi-stand-ins.js').Operator | undefined;
  let host: { stop(): Promise<void>; commandPort: number; observationPort: number } | undefined;
  let stands: typeof import('../test/support/lekiwi-stand-ins.js') | undefined;
  if (drive) {
    stands = await import('../test/support/lekiwi-stand-ins.js');
    host = await stands.startHostStandIn();
    cleanups.push(() => host!.stop());
    config.teleoperation = { commandPort: host.commandPort, observationPort: host.observationPort };
  }
  if (!teleoperationOn) config.teleoperation = { enabled: false };
  await writeFile(configFile, JSON.stringify(config, null, 2));

  // 4. The agent, with plain node.
  const agent = spawn(process.execPath, [join(bundleDir, 'main.mjs'), '--config', configFile], {
    cwd: work,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  let logLines = 0;
  const keep = (chunk: Buffer) => {
    const text = chunk.toString();
    logLines += text.split('\n').filter(Boolean).length;
    output = (output + text).slice(-20_000);
  };
  agent.stdout.on('data', keep);
  agent.stderr.on('data', keep);
  const exited = new Promise<number | null>((resolve) => agent.once('exit', (code) => resolve(code)));
  cleanups.push(async () => {
    if (agent.exitCode === null && agent.signalCode === null) {
      agent.kill('SIGTERM');
      await exited;
    }
  });
  const pid = agent.pid as number;
  const spawnedAt = performance.now();

  const samples: { at: number; agent: ProcessSample; children: ProcessSample[] }[] = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const own = await sampleProcess(pid);
      if (!own) break;
      const children = (await Promise.all((await descendants(pid)).map(sampleProcess))).filter((s): s is ProcessSample => s !== undefined);
      samples.push({ at: performance.now(), agent: own, children });
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
  })();

  await waitFor(() => output.includes('"link up"'), {
    timeoutMs: 60_000,
    what: 'the agent to connect',
    failFast: () => (agent.exitCode !== null ? `it exited with ${agent.exitCode}:\n${output}` : undefined),
  });
  const connectedMs = performance.now() - spawnedAt;
  if (drive && stands && host) {
    driving = stands.connectOperator({ commandPort: host.commandPort, observationPort: host.observationPort });
    cleanups.push(async () => driving?.close());
    await driving.startDriving(30);
  }
  await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));

  // 5. The measured window.
  const windowStart = performance.now();
  const startCpu = (await sampleProcess(pid))?.cpuTicks ?? NaN;
  const startChildren = await Promise.all((await descendants(pid)).map(async (child) => [child, (await sampleProcess(child))?.cpuTicks ?? 0] as const));
  const startBytes = await mqttSocketCounters(pid, cloud.endpoints.mqttPort);
  process.stdout.write(
    `Agent pid ${pid} connected in ${(connectedMs / 1000).toFixed(1)} s; measuring ${minutes} min${drive ? ' while driving at 30 Hz' : ''}…\n`,
  );
  const windowMs = minutes * 60_000;
  const progressEvery = 60_000;
  for (let elapsed = 0; elapsed < windowMs; elapsed += progressEvery) {
    await new Promise((resolve) => setTimeout(resolve, Math.min(progressEvery, windowMs - elapsed)));
    if (agent.exitCode !== null) throw new Error(`the agent exited with ${agent.exitCode} during the run:\n${output}`);
    const last = samples.at(-1);
    if (last) process.stdout.write(`  ${((performance.now() - windowStart) / 60_000).toFixed(1)} min: RSS ${mb(last.agent.rssKb)}\n`);
  }
  const windowSeconds = (performance.now() - windowStart) / 1000;
  const endCpu = (await sampleProcess(pid))?.cpuTicks ?? NaN;
  const endChildren = new Map(
    await Promise.all((await descendants(pid)).map(async (child) => [child, (await sampleProcess(child))?.cpuTicks ?? 0] as const)),
  );
  const endBytes = await mqttSocketCounters(pid, cloud.endpoints.mqttPort);
  let teleoperation: unknown;
  if (drive) {
    teleoperation = (await getJson(cloud.endpoints, `/robots/${THING}`)).body?.teleoperation;
    driving?.stopDriving();
  }
  sampling = false;
  await sampler;

  // 6. The figures.
  const agentCpuPercent = ((endCpu - startCpu) / CLOCK_TICKS_PER_SECOND / windowSeconds) * 100;
  const childTicks = [...endChildren].reduce((sum, [child, ticks]) => sum + ticks - (startChildren.find(([c]) => c === child)?.[1] ?? 0), 0);
  const childCpuPercent = (childTicks / CLOCK_TICKS_PER_SECOND / windowSeconds) * 100;
  const peak = samples.reduce((best, sample) => (sample.agent.rssKb > best.agent.rssKb ? sample : best), samples[0]!);
  const hwmKb = Math.max(...samples.map((sample) => sample.agent.hwmKb));
  const childPeakKb = Math.max(0, ...samples.map((sample) => sample.children.reduce((sum, child) => sum + child.rssKb, 0)));
  const last = samples.at(-1)!;
  const sameSocket = startBytes.sockets === 1 && endBytes.sockets === 1 && endBytes.bytesSent >= startBytes.bytesSent;
  const sentPerSecond = sameSocket ? (endBytes.bytesSent - startBytes.bytesSent) / windowSeconds : NaN;
  const receivedPerSecond = sameSocket ? (endBytes.bytesReceived - startBytes.bytesReceived) / windowSeconds : NaN;

  const lines = [
    '',
    `Agent footprint: bundled agent on node ${process.version}, ${minutes} min measured after a ${SETTLE_MS / 1000} s settle, telemetry on` +
      `, teleoperation monitor ${teleoperationOn ? 'on' : 'off'}${drive ? ', driven at 30 Hz' : ''}${minutes < 5 ? ' (quick look; the figure is --minutes 5)' : ''}`,
    `  peak RSS (VmHWM)       ${mb(hwmKb)}   ${verdict(hwmKb / 1024 <= AIMS.rssMb)} (≤ ${AIMS.rssMb} MB)`,
    `    at the largest sample: RSS ${mb(peak.agent.rssKb)} = anonymous ${mb(peak.agent.anonKb)} + file-backed ${mb(peak.agent.fileKb)} (+ shmem)`,
    `    at the end:            RSS ${mb(last.agent.rssKb)} = anonymous ${mb(last.agent.anonKb)} + file-backed ${mb(last.agent.fileKb)}`,
    `    child processes (sock_diag.py co-process): peak RSS ${mb(childPeakKb)}, not counted above`,
    `  CPU                    ${agentCpuPercent.toFixed(2)} % of one core   ${verdict(agentCpuPercent <= AIMS.cpuPercent)} (≤ ${AIMS.cpuPercent} %)` +
      `; child processes ${childCpuPercent.toFixed(2)} %`,
    `  sent to MQTT           ${Number.isFinite(sentPerSecond) ? `${sentPerSecond.toFixed(0)} B/s` : 'n/a (the socket changed: the link reconnected during the run)'}` +
      `   ${Number.isFinite(sentPerSecond) ? verdict(sentPerSecond <= AIMS.bytesPerSecond) : ''} (≤ ${AIMS.bytesPerSecond} B/s)` +
      `; received ${Number.isFinite(receivedPerSecond) ? `${receivedPerSecond.toFixed(0)} B/s` : 'n/a'}`,
    `    (kernel bytes_sent of the agent's TCP socket to port ${cloud.endpoints.mqttPort}: MQTT inside TLS, no TCP/IP headers;` +
      ` ${endBytes.bytesSent} B since connect, ${endBytes.bytesSent - startBytes.bytesSent} B in the window)`,
    `  connected after ${(connectedMs / 1000).toFixed(1)} s; ${samples.length} samples; ${logLines} log lines`,
    ...(drive ? [`  teleoperation as the cloud saw it at the end of the run: ${JSON.stringify(teleoperation)}`] : []),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
} catch (error) {
  process.stderr.write(`bench:agent failed: ${(error as Error).stack ?? String(error)}\n`);
  exitCode = 1;
} finally {
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  await removeStateDir(stateDir);
  await rm(work, { recursive: true, force: true });
}
process.exit(exitCode);
