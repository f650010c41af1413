import { readdir, readFile, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import type { TelemetrySample } from '../../schemas/device.js';

/**
 * The Pi's vital signs, read from what Linux already exposes (/proc, /sys, statfs): a handful of small file reads per
 * sample, no child processes, so sampling costs next to nothing. Every source is optional: one that is missing or
 * unreadable (no thermal zone on many x86 boxes, a container without /sys) leaves its field out and is reported once
 * through `log`; `read()` never throws, so a flaky source can never take the agent down.
 */

/** What `statfs` returns that disk usage needs; injectable so tests can pin exact block counts. */
export interface DiskStats {
  readonly blocks: number;
  readonly bfree: number;
  readonly bavail: number;
}

export type SystemTelemetryLog = (message: string, details: Record<string, unknown>) => void;

export interface SystemTelemetryOptions {
  /** Where /proc and /sys live; tests point it at a fixture tree. Default `/`. */
  readonly root?: string;
  /** The mount whose fill level is reported as diskPercent, relative to `root`. Default `/`. */
  readonly diskMount?: string;
  readonly agentVersion?: string;
  /** The installed LeRobot version; undefined when it is not installed. Failures are logged, never thrown. */
  readonly lerobotVersion?: () => Promise<string | undefined>;
  readonly now?: () => Date;
  readonly log?: SystemTelemetryLog;
  readonly statDisk?: (path: string) => Promise<DiskStats>;
}

export interface SystemTelemetry {
  read(): Promise<TelemetrySample>;
}

type Fields = Omit<TelemetrySample, 'sampledAt'>;

/** /proc/stat's aggregate `cpu` line reduced to what a busy fraction needs. */
interface CpuCounters {
  readonly total: number;
  readonly idle: number;
}

/** The schema bounds string fields at 64 characters; a longer version would make the whole sample invalid. */
const MAX_VERSION_LENGTH = 64;

/** Raspberry Pi OS names the SoC sensor this (Pi 3/4/5); elsewhere the first zone is the best guess. */
const PI_CPU_ZONE_TYPE = 'cpu-thermal';

export function createSystemTelemetry(options: SystemTelemetryOptions = {}): SystemTelemetry {
  const root = options.root ?? '/';
  const diskPath = join(root, options.diskMount ?? '/');
  const now = options.now ?? (() => new Date());
  const log = options.log ?? (() => {});
  const statDisk = options.statDisk ?? ((path: string) => statfs(path));
  const proc = (name: string) => join(root, 'proc', name);
  const thermalDirectory = join(root, 'sys', 'class', 'thermal');
  if (options.agentVersion !== undefined && !validVersion(options.agentVersion)) {
    throw new RangeError(`system telemetry: agentVersion must be 1–${MAX_VERSION_LENGTH} characters`);
  }

  // Each broken source is worth one line in the log, not one every few seconds for the life of the agent.
  const reported = new Set<string>();
  let previousCpu: CpuCounters | undefined;

  /** Runs one source; a failure omits its fields. */
  async function source(name: string, reader: () => Promise<Fields>): Promise<Fields> {
    try {
      return await reader();
    } catch (error) {
      if (!reported.has(name)) {
        reported.add(name);
        log('telemetry source unavailable; its fields are left out', {
          source: name,
          error: error instanceof Error ? error.message : String(error),
        });
      }
      return {};
    }
  }

  async function cpu(): Promise<Fields> {
    const counters = parseCpuCounters(await readFile(proc('stat'), 'utf8'));
    const previous = previousCpu;
    previousCpu = counters;
    if (previous === undefined) return {};
    const total = counters.total - previous.total;
    const idle = counters.idle - previous.idle;
    // No tick between reads, or counters that went backwards (they never should): no honest percentage to give.
    if (total <= 0 || idle < 0 || idle > total) return {};
    return { cpuPercent: roundTenth(((total - idle) / total) * 100) };
  }

  async function memory(): Promise<Fields> {
    const info = parseMeminfo(await readFile(proc('meminfo'), 'utf8'));
    const totalKb = info.get('MemTotal');
    // MemAvailable is the kernel's own estimate of what can be claimed without swapping; "free" undercounts caches.
    const availableKb = info.get('MemAvailable');
    if (totalKb === undefined || availableKb === undefined || totalKb <= 0) {
      throw new Error('meminfo lacks MemTotal or MemAvailable');
    }
    const usedKb = Math.max(0, totalKb - availableKb);
    return { memoryPercent: clampPercent((usedKb / totalKb) * 100), memoryUsedBytes: usedKb * 1024 };
  }

  async function disk(): Promise<Fields> {
    const stats = await statDisk(diskPath);
    const used = stats.blocks - stats.bfree;
    // Like df: blocks reserved for root are not space the robot's software can use, so they count as neither.
    const usable = used + stats.bavail;
    if (usable <= 0) throw new Error(`no usable blocks at ${diskPath}`);
    return { diskPercent: clampPercent((used / usable) * 100) };
  }

  async function temperature(): Promise<Fields> {
    const zones = (await readdir(thermalDirectory))
      .filter((name) => /^thermal_zone\d+$/.test(name))
      .sort((a, b) => zoneNumber(a) - zoneNumber(b));
    if (zones.length === 0) throw new Error(`no thermal zones in ${thermalDirectory}`);
    const types = await Promise.all(
      zones.map((zone) => readFile(join(thermalDirectory, zone, 'type'), 'utf8').then((t) => t.trim(), () => '')),
    );
    const chosen = zones[Math.max(0, types.indexOf(PI_CPU_ZONE_TYPE))]!;
    const millidegrees = parseNumber((await readFile(join(thermalDirectory, chosen, 'temp'), 'utf8')).trim());
    const celsius = roundTenth(millidegrees / 1000);
    if (celsius < -60 || celsius > 200) throw new Error(`implausible temperature ${celsius} °C in ${chosen}`);
    return { cpuTemperatureC: celsius };
  }

  async function uptime(): Promise<Fields> {
    const seconds = parseNumber(firstWord(await readFile(proc('uptime'), 'utf8')));
    return { uptimeSeconds: nonNegative(seconds, 'uptime') };
  }

  async function load(): Promise<Fields> {
    const load1 = parseNumber(firstWord(await readFile(proc('loadavg'), 'utf8')));
    return { load1: nonNegative(load1, 'load1') };
  }

  async function network(): Promise<Fields> {
    return parseNetDev(await readFile(proc(join('net', 'dev')), 'utf8'));
  }

  async function lerobot(): Promise<Fields> {
    if (options.lerobotVersion === undefined) return {};
    const version = await options.lerobotVersion();
    if (version === undefined) return {};
    if (!validVersion(version)) throw new Error(`unusable LeRobot version ${JSON.stringify(version.slice(0, 80))}`);
    return { lerobotVersion: version };
  }

  return {
    async read() {
      const sampledAt = now().toISOString();
      const parts = await Promise.all([
        source('cpu', cpu),
        source('memory', memory),
        source('disk', disk),
        source('temperature', temperature),
        source('uptime', uptime),
        source('load', load),
        source('network', network),
        source('lerobot', lerobot),
      ]);
      const agentVersion: Fields = options.agentVersion === undefined ? {} : { agentVersion: options.agentVersion };
      return Object.assign({ sampledAt }, ...parts, agentVersion) as TelemetrySample;
    },
  };
}

/**
 * The aggregate line: `cpu user nice system idle iowait irq softirq steal guest guest_nice` in clock ticks. guest
 * time is already inside user/nice, so only the first eight columns make the total; iowait is idle time.
 */
function parseCpuCounters(stat: string): CpuCounters {
  const line = stat.split('\n').find((l) => l.startsWith('cpu '));
  if (line === undefined) throw new Error('/proc/stat has no aggregate cpu line');
  const ticks = line.trim().split(/\s+/).slice(1, 9).map(parseNumber);
  if (ticks.length < 4) throw new Error('/proc/stat cpu line is too short');
  const total = ticks.reduce((sum, t) => sum + t, 0);
  return { total, idle: ticks[3]! + (ticks[4] ?? 0) };
}

/** `MemTotal:        3884412 kB` → MemTotal → 3884412 (kB). */
function parseMeminfo(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    const match = /^(\w+):\s+(\d+)/.exec(line);
    if (match) values.set(match[1]!, Number(match[2]));
  }
  return values;
}

/** Two header lines, then `  eth0: rxBytes rxPackets … (8 receive columns) txBytes …` per interface. */
function parseNetDev(text: string): Fields {
  let rx = 0;
  let tx = 0;
  let interfaces = 0;
  for (const line of text.split('\n').slice(2)) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const name = line.slice(0, colon).trim();
    // Loopback traffic never leaves the Pi (the agent talking to the local host process would otherwise dominate).
    if (name === 'lo') continue;
    const columns = line.slice(colon + 1).trim().split(/\s+/);
    rx += parseNumber(columns[0] ?? '');
    tx += parseNumber(columns[8] ?? '');
    interfaces += 1;
  }
  if (interfaces === 0) throw new Error('/proc/net/dev lists no interface besides loopback');
  if (!Number.isSafeInteger(rx) || !Number.isSafeInteger(tx)) throw new Error('network byte counters overflowed');
  return { networkRxBytes: rx, networkTxBytes: tx };
}

function parseNumber(text: string): number {
  const value = Number(text);
  if (text === '' || !Number.isFinite(value)) throw new Error(`not a number: ${JSON.stringify(text.slice(0, 40))}`);
  return value;
}

function firstWord(text: string): string {
  return text.trim().split(/\s+/)[0] ?? '';
}

function nonNegative(value: number, what: string): number {
  if (value < 0) throw new Error(`${what} is negative: ${value}`);
  return value;
}

function zoneNumber(name: string): number {
  return Number(name.slice('thermal_zone'.length));
}

/** One decimal is finer than any deadband and keeps the message short. */
function roundTenth(value: number): number {
  return Math.round(value * 10) / 10;
}

function clampPercent(value: number): number {
  return Math.min(100, Math.max(0, roundTenth(value)));
}

function validVersion(version: string): boolean {
  return version.length > 0 && version.length <= MAX_VERSION_LENGTH;
}
