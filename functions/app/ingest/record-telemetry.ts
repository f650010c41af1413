import { TelemetrySample } from '../../../schemas/index.js';
import { executeRobotCommand } from '../execute-robot-command.js';
import type { IngestDeps, IngestResult } from './ingest-result.js';
import { readThingMessage } from './thing-message.js';

/** A telemetry sample goes to the robot's head; the decider raises or clears alerts as thresholds are crossed. */
export async function recordTelemetry(deps: IngestDeps, payload: unknown): Promise<IngestResult> {
  const message = readThingMessage(payload, TelemetrySample);
  if (!message.valid) return message.rejection;
  const outcome = await executeRobotCommand(
    deps.log,
    message.robotId,
    { type: 'RecordTelemetry', sample: message.body },
    { now: deps.now },
  );
  return { status: 'recorded', robotId: message.robotId, outcome };
}
