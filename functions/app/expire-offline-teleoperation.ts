import { z } from 'zod';
import { executeRobotCommand } from './execute-robot-command.js';
import type { EventLog } from './ports.js';

/**
 * The offline timeout of teleoperation sessions (issue 9, item 1). A dropped link leaves a session open but
 * unconfirmed; if the robot stays offline for the timeout, nobody can confirm it and it must not keep the robot out
 * of deployments forever, so it is closed as `robot-offline`.
 *
 * The read model only finds the candidates; each is decided on the robot's head in the event log through the normal
 * command path (`ExpireOfflineTeleoperation`, closeIfOfflineTooLong in the decider), so a robot that came back
 * meanwhile, a session its agent closed, or a sweep run twice (overlapping schedules, a retry) appends nothing more:
 * the event's id is derived from the session and the disconnect.
 */

/** How long a robot may stay offline with a session open before the session is closed (`robot-offline`). */
export const DEFAULT_TELEOPERATION_OFFLINE_TIMEOUT_SECONDS = 120;

export const TeleoperationOfflineTimeoutEnv = z.object({
  TELEOPERATION_OFFLINE_TIMEOUT_SECONDS: z.coerce
    .number()
    .positive('must be a positive number of seconds')
    .max(7 * 24 * 3600, 'must be at most a week (604800 s)')
    .default(DEFAULT_TELEOPERATION_OFFLINE_TIMEOUT_SECONDS),
});

/** Robots at most this many per run; the rest are found by the next run. */
export const MAX_ROBOTS_PER_SWEEP = 500;

export interface OfflineTeleoperations {
  /**
   * Robots whose read model shows a teleoperation session open while the robot has been offline since `offlineBefore`
   * or earlier, at most `limit`, oldest disconnect first.
   */
  robotsOfflineWhileTeleoperated(offlineBefore: Date, limit: number): Promise<string[]>;
}

export interface SweepResult {
  readonly candidates: number;
  /** Robots whose session was closed now. */
  readonly closed: readonly string[];
  /** Robots that could not be decided (the next run tries again), with why. */
  readonly failed: readonly { readonly robotId: string; readonly error: string }[];
}

export async function expireOfflineTeleoperation(deps: {
  readonly finder: OfflineTeleoperations;
  readonly eventLog: EventLog;
  readonly now: () => Date;
  readonly timeoutMs: number;
}): Promise<SweepResult> {
  const now = deps.now();
  const robotIds = await deps.finder.robotsOfflineWhileTeleoperated(new Date(now.getTime() - deps.timeoutMs), MAX_ROBOTS_PER_SWEEP);
  const closed: string[] = [];
  const failed: { robotId: string; error: string }[] = [];
  for (const robotId of robotIds) {
    try {
      const outcome = await executeRobotCommand(
        deps.eventLog,
        robotId,
        { type: 'ExpireOfflineTeleoperation', now: now.toISOString(), timeoutMs: deps.timeoutMs },
        { now: deps.now },
      );
      if (outcome.status === 'appended') closed.push(robotId);
    } catch (error) {
      failed.push({ robotId, error: (error as Error)?.message ?? String(error) });
    }
  }
  return { candidates: robotIds.length, closed, failed };
}
