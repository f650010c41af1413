import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { lerobotVersionFromSitePackages } from '../../agent/adapters/lerobot-version.js';
import {
  createSystemTelemetry,
  type DiskStats,
  type SystemTelemetryOptions,
} from '../../agent/adapters/system-telemetry.js';
import { TelemetrySample } from '../../schemas/device.js';

/** The agent's vital-signs reader against fixture trees shaped like a Raspberry Pi 4's /proc and /sys, and this machine. */

const SAMPLED_AT = '2026-11-22T20:00:00.000Z';

// Captured in the shape of a Pi 4 (4 cores, 4 GB) running Raspberry Pi OS bookworm.
const PI_STAT = `cpu  10132153 290696 3084719 46828483 16683 0 25195 0 0 0
cpu0 2533038 72674 771180 11707120 4170 0 17875 0 0 0
cpu1 2533038 72674 771180 11707121 4171 0 2440 0 0 0
cpu2 2533038 72674 771179 11707121 4171 0 2440 0 0 0
cpu3 2533039 72674 771180 11707121 4171 0 2440 0 0 0
intr 199361713 0 0 0 0 0 0 0 0 0 0 0 0 0
ctxt 390735466
btime 1763830000
processes 215743
procs_running 2
procs_blocked 0
softirq 40122312 12 8391201 6 1120394 0 0 2210943 14203911 1 14195844
`;

// The same counters 2000 ticks later: user +600, system +200, idle +1100, iowait +100 → 800 of 2000 busy = 40 %.
const PI_STAT_LATER = PI_STAT.replace(
  'cpu  10132153 290696 3084719 46828483 16683 0 25195 0 0 0',
  'cpu  10132753 290696 3084919 46829583 16783 0 25195 0 0 0',
);

const PI_MEMINFO = `MemTotal:        3884412 kB
MemFree:         2417320 kB
MemAvailable:    3173480 kB
Buffers:           51212 kB
Cached:           845584 kB
SwapCached:            0 kB
Active:           565932 kB
Inactive:         716240 kB
SwapTotal:        102396 kB
SwapFree:         102396 kB
Dirty:                48 kB
Shmem:             20196 kB
`;

const PI_NET_DEV = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  8812731   61023    0    0    0     0          0         0  8812731   61023    0    0    0     0       0          0
  eth0:  1048576    1200    0    0    0     0          0        12     2048      20    0    0    0     0       0          0
 wlan0: 918273645  712345    0  120    0     0          0      4321 56473829  402113    0    0    0     0       0          0
`;

const PI_FILES: Record<string, string> = {
  'proc/stat': PI_STAT,
  'proc/meminfo': PI_MEMINFO,
  'proc/uptime': '351735.47 1389405.17\n',
  'proc/loadavg': '0.52 0.58 0.59 1/312 21734\n',
  'proc/net/dev': PI_NET_DEV,
  'sys/class/thermal/thermal_zone0/type': 'cpu-thermal\n',
  'sys/class/thermal/thermal_zone0/temp': '48686\n',
};

// 4 KiB blocks of a 32 GB SD card: used = blocks − bfree, usable = used + bavail (root's reserve excluded, like df).
const PI_DISK: DiskStats = { blocks: 7562752, bfree: 5000000, bavail: 4612345 };

let root: string;
let logged: { message: string; details: Record<string, unknown> }[];

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'agent-system-telemetry-'));
  logged = [];
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

async function writeTree(files: Record<string, string>): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(root, path)), { recursive: true });
    await writeFile(join(root, path), content);
  }
}

function telemetry(overrides: SystemTelemetryOptions = {}) {
  return createSystemTelemetry({
    root,
    now: () => new Date(SAMPLED_AT),
    log: (message, details) => logged.push({ message, details }),
    statDisk: async () => PI_DISK,
    ...overrides,
  });
}

function loggedSources(): unknown[] {
  return logged.map((entry) => entry.details.source).sort();
}

describe('system telemetry on a Raspberry Pi file tree', () => {
  it('parses every vital sign exactly; the first read has no CPU percentage', async () => {
    // Given a Pi's /proc and /sys
    await writeTree(PI_FILES);
    const reader = telemetry({ agentVersion: '1.4.0', lerobotVersion: async () => '0.3.3' });

    // When it is read once
    const sample = await reader.read();

    // Then every field is there, parsed from the files, and nothing was logged
    expect(sample).toEqual({
      sampledAt: SAMPLED_AT,
      // (3884412 − 3173480) kB = 710932 kB = 727994368 bytes, 18.3 % of MemTotal
      memoryPercent: 18.3,
      memoryUsedBytes: 727994368,
      // 2562752 used of 7175097 usable blocks
      diskPercent: 35.7,
      cpuTemperatureC: 48.7,
      uptimeSeconds: 351735.47,
      load1: 0.52,
      // eth0 + wlan0, loopback left out
      networkRxBytes: 919322221,
      networkTxBytes: 56475877,
      agentVersion: '1.4.0',
      lerobotVersion: '0.3.3',
    });
    expect(TelemetrySample.parse(sample)).toEqual(sample);
    expect(logged).toEqual([]);
  });

  it('computes CPU % from the /proc/stat delta between two reads', async () => {
    // Given a first read of the counters
    await writeTree(PI_FILES);
    const reader = telemetry();
    await reader.read();

    // When the counters advance by a known amount and it is read again
    await writeTree({ 'proc/stat': PI_STAT_LATER });
    const second = await reader.read();

    // Then busy ticks over total ticks (iowait counted as idle)
    expect(second.cpuPercent).toBe(40);
    expect(TelemetrySample.parse(second)).toEqual(second);
  });

  it('leaves CPU % out when no tick passed between reads', async () => {
    // Given two reads of identical counters
    await writeTree(PI_FILES);
    const reader = telemetry();
    await reader.read();

    // When read again without the counters moving
    const second = await reader.read();

    // Then there is no percentage to give, and that is not a failure
    expect(second).not.toHaveProperty('cpuPercent');
    expect(logged).toEqual([]);
  });

  it('prefers the cpu-thermal zone over zones listed before it', async () => {
    // Given a GPU zone first and the CPU zone second
    await writeTree({
      'sys/class/thermal/thermal_zone0/type': 'gpu-thermal\n',
      'sys/class/thermal/thermal_zone0/temp': '41000\n',
      'sys/class/thermal/thermal_zone1/type': 'cpu-thermal\n',
      'sys/class/thermal/thermal_zone1/temp': '81234\n',
    });

    // When read
    const sample = await telemetry().read();

    // Then the CPU's millidegrees become °C
    expect(sample.cpuTemperatureC).toBe(81.2);
  });

  it('takes the lowest-numbered zone when none is cpu-thermal', async () => {
    // Given an x86 box's zones, numbered past 9 so string order would pick the wrong one
    await writeTree({
      'sys/class/thermal/thermal_zone10/type': 'x86_pkg_temp\n',
      'sys/class/thermal/thermal_zone10/temp': '45000\n',
      'sys/class/thermal/thermal_zone2/type': 'acpitz\n',
      'sys/class/thermal/thermal_zone2/temp': '27800\n',
      'sys/class/thermal/cooling_device0/type': 'Processor\n',
    });

    // When read
    const sample = await telemetry().read();

    // Then zone 2 is used
    expect(sample.cpuTemperatureC).toBe(27.8);
  });

  it('omits missing sources and logs each of them once, across reads', async () => {
    // Given a tree with only /proc/uptime and a disk mount that does not exist
    await writeTree({ 'proc/uptime': '12.50 40.10\n' });
    const reader = telemetry({ diskMount: '/mnt/usb', statDisk: undefined });

    // When read twice
    const first = await reader.read();
    const second = await reader.read();

    // Then only the readable field is there, and each missing source was reported exactly once
    expect(first).toEqual({ sampledAt: SAMPLED_AT, uptimeSeconds: 12.5 });
    expect(second).toEqual(first);
    expect(TelemetrySample.parse(second)).toEqual(second);
    expect(loggedSources()).toEqual(['cpu', 'disk', 'load', 'memory', 'network', 'temperature']);
  });

  it('omits garbled files instead of sending values the schema would refuse', async () => {
    // Given files that exist but make no sense
    await writeTree({
      ...PI_FILES,
      'proc/meminfo': 'MemTotal:        3884412 kB\nMemFree:         2417320 kB\n',
      'proc/loadavg': 'garbage\n',
      'sys/class/thermal/thermal_zone0/temp': '-273150\n',
    });

    // When read
    const sample = await telemetry().read();

    // Then those fields are left out and logged; the rest is a valid sample
    expect(sample).not.toHaveProperty('memoryPercent');
    expect(sample).not.toHaveProperty('load1');
    expect(sample).not.toHaveProperty('cpuTemperatureC');
    expect(sample.uptimeSeconds).toBe(351735.47);
    expect(TelemetrySample.parse(sample)).toEqual(sample);
    expect(loggedSources()).toEqual(['load', 'memory', 'temperature']);
  });

  it('measures the configured mount with the real statfs', async () => {
    // Given a data mount inside the fixture root
    await mkdir(join(root, 'data'));

    // When read with the default statfs
    const sample = await telemetry({ diskMount: '/data', statDisk: undefined }).read();

    // Then the temp directory's file system gives a percentage
    expect(sample.diskPercent).toBeGreaterThanOrEqual(0);
    expect(sample.diskPercent).toBeLessThanOrEqual(100);
    expect(loggedSources()).not.toContain('disk');
  });

  it('never throws when the LeRobot lookup fails, and logs it once', async () => {
    // Given a lookup that rejects
    await writeTree(PI_FILES);
    const reader = telemetry({
      lerobotVersion: async () => {
        throw new Error('python not found');
      },
    });

    // When read twice
    const sample = await reader.read();
    await reader.read();

    // Then the version is left out and one warning names the cause
    expect(sample).not.toHaveProperty('lerobotVersion');
    expect(logged).toEqual([
      { message: expect.any(String), details: { source: 'lerobot', error: 'python not found' } },
    ]);
  });

  it('refuses an agent version the schema could not carry, naming the field', () => {
    expect(() => telemetry({ agentVersion: 'x'.repeat(65) })).toThrow(/agentVersion/);
  });
});

describe('LeRobot version from site-packages', () => {
  it('reads Version from the dist-info METADATA', async () => {
    // Given pip's record of an installed LeRobot next to another package
    const sitePackages = join(root, 'lerobot-env/lib/python3.10/site-packages');
    await writeTree({
      'lerobot-env/lib/python3.10/site-packages/numpy-1.26.4.dist-info/METADATA': 'Metadata-Version: 2.1\nName: numpy\nVersion: 1.26.4\n',
      'lerobot-env/lib/python3.10/site-packages/lerobot-0.3.3.dist-info/METADATA':
        'Metadata-Version: 2.4\nName: lerobot\nVersion: 0.3.3\nSummary: State-of-the-art AI for real-world robotics\n',
    });

    // When looked up through the telemetry reader
    const sample = await telemetry({ lerobotVersion: lerobotVersionFromSitePackages(sitePackages) }).read();

    // Then it is the installed version
    expect(sample.lerobotVersion).toBe('0.3.3');
  });

  it('is absent, without a warning, when LeRobot is not installed', async () => {
    // Given site-packages without LeRobot
    await writeTree({ 'site-packages/numpy-1.26.4.dist-info/METADATA': 'Name: numpy\nVersion: 1.26.4\n' });

    // When read
    const sample = await telemetry({ lerobotVersion: lerobotVersionFromSitePackages(join(root, 'site-packages')) }).read();

    // Then there is no version and nothing to warn about
    expect(sample).not.toHaveProperty('lerobotVersion');
    expect(loggedSources()).not.toContain('lerobot');
  });
});

describe('system telemetry on this machine', () => {
  it('reads real /proc values in range and a valid sample', async () => {
    // Given the real root and two reads some ticks apart
    const reader = createSystemTelemetry({ log: (message, details) => logged.push({ message, details }) });
    await reader.read();
    await new Promise((resolve) => setTimeout(resolve, 250));

    // When read again
    const sample = await reader.read();

    // Then the Linux sources every machine has are present and plausible
    expect(TelemetrySample.parse(sample)).toEqual(sample);
    expect(sample.cpuPercent).toBeGreaterThanOrEqual(0);
    expect(sample.cpuPercent).toBeLessThanOrEqual(100);
    expect(sample.memoryPercent).toBeGreaterThan(0);
    expect(sample.memoryPercent).toBeLessThanOrEqual(100);
    expect(sample.memoryUsedBytes).toBeGreaterThan(0);
    expect(sample.diskPercent).toBeGreaterThanOrEqual(0);
    expect(sample.uptimeSeconds).toBeGreaterThan(0);
    expect(sample.load1).toBeGreaterThanOrEqual(0);
    expect(sample.networkRxBytes).toBeGreaterThanOrEqual(0);
    // Many x86 machines and containers have no thermal zone: then it must be left out and reported, never invented.
    if (sample.cpuTemperatureC === undefined) expect(loggedSources()).toEqual(['temperature']);
    else expect(loggedSources()).toEqual([]);
  });
});
