import type { FleetQueries, RobotListQuery } from '../../functions/app/http/fleet-queries.js';
import { fold, initialRobotState } from '../../functions/domain/robot-state.js';
import { toRobotView } from '../../functions/domain/robot-view.js';
import type { RobotView } from '../../schemas/index.js';
import { robotHistory } from './read-model-seed.js';

/**
 * A read side in memory for use cases that list robots: honours the status filter, the limit and an opaque cursor the
 * way the PostgreSQL queries do (robot id order), and records each list query it answered; getRobot finds one robot.
 */
export class InMemoryFleetQueries implements FleetQueries {
  readonly queries: RobotListQuery[] = [];
  private readonly robots: RobotView[];

  constructor(fleet: readonly { robotId: string; online: boolean }[]) {
    this.robots = fleet
      .map(({ robotId, online }) => {
        const events = robotHistory(robotId, { online });
        return toRobotView(fold(initialRobotState(robotId), events), events.length, null);
      })
      .sort((a, b) => (a.robotId < b.robotId ? -1 : 1));
  }

  async listRobots(query: RobotListQuery) {
    this.queries.push(query);
    const after = query.cursor === undefined ? '' : Buffer.from(query.cursor, 'base64url').toString();
    const matching = this.robots.filter((robot) => (query.status === undefined || robot.status === query.status) && robot.robotId > after);
    const items = matching.slice(0, query.limit);
    const more = matching.length > items.length;
    return { items, nextCursor: more ? Buffer.from(items.at(-1)!.robotId).toString('base64url') : null };
  }

  async getRobot(robotId: string): Promise<RobotView | null> {
    return this.robots.find((robot) => robot.robotId === robotId) ?? null;
  }

  listEvents(): Promise<never> {
    return Promise.reject(new Error('not used here'));
  }

  metrics(): Promise<never> {
    return Promise.reject(new Error('not used here'));
  }

  telemetryHistory(): Promise<never> {
    return Promise.reject(new Error('not used here'));
  }
}

/** Records every command, fails the ones `fails` picks, and tracks how many were in flight at once. */
export class RecordingCommandChannel {
  readonly sent: { robotId: string; request: string; payload: unknown }[] = [];
  inFlight = 0;
  maxInFlight = 0;

  constructor(private readonly fails: (robotId: string) => boolean = () => false) {}

  async send(robotId: string, request: string, payload: unknown): Promise<void> {
    this.inFlight += 1;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      await new Promise((resolve) => setImmediate(resolve));
      if (this.fails(robotId)) throw new Error(`ServiceUnavailableException: publish to ${robotId} failed`);
      this.sent.push({ robotId, request, payload });
    } finally {
      this.inFlight -= 1;
    }
  }
}
