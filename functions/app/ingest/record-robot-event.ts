import { AgentEvent } from '../../../schemas/index.js';
import { executeRobotCommand } from '../execute-robot-command.js';
import type { IngestDeps, IngestResult } from './ingest-result.js';
import { readThingMessage } from './thing-message.js';

/** A fact the agent reports (teleoperation started or stopped), appended once however often it is redelivered. */
export async function recordRobotEvent(deps: IngestDeps, payload: unknown): Promise<IngestResult> {
  const message = readThingMessage(payload, AgentEvent);
  if (!message.valid) return message.rejection;
  const outcome = await executeRobotCommand(
    deps.log,
    message.robotId,
    { type: 'RecordAgentEvent', event: message.body },
    { now: deps.now },
  );
  return { status: 'recorded', robotId: message.robotId, outcome };
}
