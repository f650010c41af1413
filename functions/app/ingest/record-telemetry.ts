import { TelemetrySample } from '../../../schemas/index.js';
import { executeRobotCommand } from '../execute-robot-command.js';
import { invalid, type IngestDeps, type IngestResult } from './ingest-result.js';
import { readThingMessage } from './thing-message.js';

/**
 * How far ahead of the cloud's clock a robot's clock may run. Samples are ordered by the robot's `sampledAt`, so one
 * sample from far in the future (a Pi without a real-time clock, before NTP has synced) would make every later
 * sample look stale and freeze the robot's telemetry and alerts until real time caught up.
 */
export const MAX_CLOCK_AHEAD_MS = 5 * 60_000;

/** A telemetry sample goes to the robot's head; the decider raises or clears alerts as thresholds are crossed. */
export async function recordTelemetry(deps: IngestDeps, payload: unknown): Promise<IngestResult> {
  const message = readThingMessage(payload, TelemetrySample);
  if (!message.valid) return message.rejection;
  const now = deps.now();
  if (Date.parse(message.body.sampledAt) > now.getTime() + MAX_CLOCK_AHEAD_MS) {
    return invalid(message.robotId, [
      {
        field: 'sampledAt',
        message: `is more than ${MAX_CLOCK_AHEAD_MS / 60_000} minutes ahead of the cloud's clock (${now.toISOString()}); check the robot's time sync`,
      },
    ]);
  }
  const outcome = await executeRobotCommand(
    deps.log,
    message.robotId,
    { type: 'RecordTelemetry', sample: message.body },
    { now: deps.now },
  );
  return { status: 'recorded', robotId: message.robotId, outcome };
}
