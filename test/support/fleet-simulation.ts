import type { LifecycleEvent } from '../../schemas/index.js';
import { executeRobotCommand } from '../../functions/app/execute-robot-command.js';
import type { EventLog } from '../../functions/app/ports.js';
import { CommandRejected, type RobotCommand } from '../../functions/domain/robot-decider.js';
import { seededRandom } from '../../lib/seeded-random.js';

/**
 * A synthetic fleet for the projector's tests and benchmark: robots connect and disconnect (with IoT Core's
 * redeliveries), report telemetry that crosses the alert thresholds, get driven, and are marked failed and recovered.
 * Every command goes through the real command loop into the given event log (a RecordingEventLog, or DynamoDB), so
 * the events are the ones the decider would append. Seeded: the same options always make the same history.
 */
export class FleetSimulation<L extends EventLog> {
  private readonly random: () => number;
  private readonly robots: SimulatedRobot[];
  private clock: number;

  constructor(
    readonly log: L,
    options: { robots: number; seed: number; startAt?: string },
  ) {
    this.random = seededRandom(options.seed);
    this.clock = Date.parse(options.startAt ?? '2026-11-01T08:00:00.000Z');
    this.robots = Array.from({ length: options.robots }, (_, index) => new SimulatedRobot(robotIdOf(index)));
  }

  get robotIds(): string[] {
    return this.robots.map((robot) => robot.robotId);
  }

  /** One command on a random robot. */
  async step(): Promise<void> {
    const robot = this.robots[Math.floor(this.random() * this.robots.length)]!;
    this.clock += 1 + Math.floor(this.random() * 2_000);
    const command = robot.next(this.random, this.clock);
    try {
      await executeRobotCommand(this.log, robot.robotId, command, { now: () => new Date(this.clock) });
    } catch (error) {
      // Marking a failed robot failed again (and the like) is refused: that is the decider working, not a bug.
      if (!(error instanceof CommandRejected)) throw error;
    }
  }

  async run(steps: number): Promise<void> {
    for (let i = 0; i < steps; i++) await this.step();
  }
}

export function robotIdOf(index: number): string {
  const serial = String(index + 1).padStart(4, '0');
  return index % 3 === 2 ? `xle-XL${serial}` : `lekiwi-LK${serial}`;
}

class SimulatedRobot {
  private registered = false;
  private online = false;
  private driving = false;
  private failed = false;
  private versionNumber = 0;
  private temperature = 55;
  private disk = 60;
  private counter = 0;
  private lastPresence: LifecycleEvent | null = null;

  constructor(readonly robotId: string) {}

  next(random: () => number, clock: number): RobotCommand {
    const at = new Date(clock).toISOString();
    const id = (kind: string) => `${this.robotId}:${kind}:${++this.counter}`;
    if (!this.registered) {
      this.registered = true;
      return { type: 'RegisterRobot', eventId: `register:${this.robotId}`, at };
    }
    const roll = random();
    // IoT Core delivers lifecycle events at least once and out of order: send an old one again now and then.
    if (roll < 0.05 && this.lastPresence) return { type: 'RecordPresence', presence: this.lastPresence };
    if (!this.online) return this.presence(true, clock, random);
    if (roll < 0.5) return this.telemetry(random, at);
    if (roll < 0.72) {
      this.driving = !this.driving;
      const eventId = id('teleop');
      return {
        type: 'RecordAgentEvent',
        event: this.driving
          ? {
              type: 'TeleoperationStarted',
              eventId,
              occurredAt: at,
              data: { operatorAddress: `10.0.0.${1 + Math.floor(random() * 200)}`, signals: ['actions', 'peer'], score: 0.9 },
            }
          : {
              type: 'TeleoperationStopped',
              eventId,
              occurredAt: at,
              // Half the agents report the duration themselves; the read model works it out for the others.
              data: random() < 0.5 ? { reason: 'operator-idle', durationMs: Math.floor(random() * 60_000) } : { reason: 'operator-idle' },
            },
      };
    }
    if (roll < 0.8) {
      this.failed = !this.failed;
      return this.failed
        ? { type: 'MarkFailed', eventId: id('fail'), at, reason: 'arm calibration lost', by: 'engineer@fleet' }
        : { type: 'Recover', eventId: id('recover'), at, by: 'engineer@fleet', note: 'recalibrated' };
    }
    return this.presence(false, clock, random);
  }

  private presence(connect: boolean, clock: number, random: () => number): RobotCommand {
    if (connect) this.versionNumber++;
    this.online = connect;
    this.driving = false;
    const common = {
      clientId: this.robotId,
      timestamp: clock,
      sessionIdentifier: `${this.robotId}-session-${this.versionNumber}`,
      principalIdentifier: 'a1b2c3d4e5f6',
      versionNumber: this.versionNumber,
    };
    const presence: LifecycleEvent = connect
      ? { ...common, eventType: 'connected', ipAddress: `192.168.7.${1 + Math.floor(random() * 200)}` }
      : { ...common, eventType: 'disconnected', clientInitiatedDisconnect: random() < 0.5, disconnectReason: 'CONNECTION_LOST' };
    this.lastPresence = presence;
    return { type: 'RecordPresence', presence };
  }

  private telemetry(random: () => number, sampledAt: string): RobotCommand {
    // Random walks wide enough to cross the raise and clear thresholds of the temperature and disk alerts.
    this.temperature = Math.min(95, Math.max(40, this.temperature + (random() - 0.45) * 12));
    this.disk = Math.min(99, Math.max(40, this.disk + (random() - 0.4) * 8));
    return {
      type: 'RecordTelemetry',
      sample: {
        sampledAt,
        cpuPercent: Math.round(random() * 1000) / 10,
        memoryPercent: Math.round(random() * 1000) / 10,
        diskPercent: Math.round(this.disk * 10) / 10,
        cpuTemperatureC: Math.round(this.temperature * 10) / 10,
        uptimeSeconds: 3_600,
        agentVersion: '0.1.0',
      },
    };
  }
}

