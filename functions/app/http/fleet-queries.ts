import type { EventPage, FleetMetrics, Lifecycle, PresenceStatus, RobotModel, RobotPage, RobotView, TelemetrySample } from '../../../schemas/index.js';

/** Which robots a list asks for: everyone, or only the healthy or deployable ones, narrowed by the filters. */
export interface RobotListQuery {
  readonly only?: 'healthy' | 'deployable' | undefined;
  readonly status?: PresenceStatus | undefined;
  readonly model?: RobotModel | undefined;
  readonly lifecycle?: Lifecycle | undefined;
  /** The software version the robot runs (RobotView.software.version). */
  readonly version?: string | undefined;
  readonly limit: number;
  readonly cursor?: string | undefined;
}

export interface EventListQuery {
  readonly limit: number;
  readonly cursor?: string | undefined;
  /** Only events with `seq > after`, oldest first (without it: newest first). Not with `cursor`, which carries it on. */
  readonly after?: number | undefined;
}

/** The read side of the fleet (PostgreSQL read models in AWS and locally). */
export interface FleetQueries {
  listRobots(query: RobotListQuery): Promise<RobotPage>;
  getRobot(robotId: string): Promise<RobotView | null>;
  /**
   * Newest first, or oldest first from `after` (a cursor continues the order it was handed out in); null when the robot
   * is not in the read model.
   */
  listEvents(robotId: string, query: EventListQuery): Promise<EventPage | null>;
  metrics(): Promise<FleetMetrics>;
  /**
   * The robot's stored samples with `from <= sampledAt < to`: the newest `limit` of them, oldest first, and whether
   * the window held more. Null when the robot is not in the read model.
   */
  telemetryHistory(robotId: string, query: TelemetryHistoryQuery): Promise<{ samples: TelemetrySample[]; truncated: boolean } | null>;
}

export interface TelemetryHistoryQuery {
  readonly from: Date;
  readonly to: Date;
  readonly limit: number;
}

/**
 * A cursor that this API did not hand out for this very query (garbled, edited, or taken from another list): the
 * caller gets a 400 naming `cursor` rather than a silently wrong page.
 */
export class InvalidCursor extends Error {
  override readonly name = 'InvalidCursor';
}
