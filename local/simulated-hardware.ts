import type { TelemetrySample } from '../schemas/device.js';
import { seededRandom } from '../lib/seeded-random.js';

/**
 * A Pi that is not there: vital signs that drift like a real one's (a bounded random walk per metric, seeded by the
 * robot's name so each robot has its own character), for the simulated fleet. It has the same `read()` the agent's
 * /proc reader has, so the agent code above it is the real one.
 */
export interface SimulatedTelemetryOptions {
  readonly thingName: string;
  readonly agentVersion?: string;
  readonly now?: () => Date;
}

interface Walk {
  value: number;
  readonly min: number;
  readonly max: number;
  readonly step: number;
}

export function createSimulatedTelemetry(options: SimulatedTelemetryOptions): { read(): Promise<TelemetrySample> } {
  const random = seededRandom(options.thingName);
  const now = options.now ?? (() => new Date());
  const startedAt = now().getTime() - Math.floor(random() * 86_400_000);
  const walk = (min: number, max: number, step: number): Walk => ({ value: min + random() * (max - min), min, max, step });
  const cpu = walk(3, 45, 4);
  const temperature = walk(42, 68, 0.6);
  const memory = walk(25, 55, 1.5);
  const disk = walk(30, 70, 0.05);
  let rx = Math.floor(random() * 1e9);
  let tx = Math.floor(random() * 1e8);
  const next = (metric: Walk) => {
    metric.value = Math.min(metric.max, Math.max(metric.min, metric.value + (random() * 2 - 1) * metric.step));
    return Math.round(metric.value * 10) / 10;
  };
  return {
    async read() {
      const at = now();
      rx += Math.floor(random() * 40_000);
      tx += Math.floor(random() * 8_000);
      const memoryPercent = next(memory);
      return {
        sampledAt: at.toISOString(),
        cpuPercent: next(cpu),
        memoryPercent,
        memoryUsedBytes: Math.round((memoryPercent / 100) * 4 * 1024 ** 3),
        diskPercent: next(disk),
        cpuTemperatureC: next(temperature),
        uptimeSeconds: Math.floor((at.getTime() - startedAt) / 1000),
        load1: Math.round((next(cpu) / 25) * 100) / 100,
        networkRxBytes: rx,
        networkTxBytes: tx,
        agentVersion: options.agentVersion ?? 'simulated',
        lerobotVersion: '0.4.2',
      };
    },
  };
}

