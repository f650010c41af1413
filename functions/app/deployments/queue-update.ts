import { UpdateQueuedData } from '../../../schemas/deployments.js';
import { executeRobotCommand, type CommandOutcome } from '../execute-robot-command.js';
import type { EventLog } from '../ports.js';

/**
 * The orchestrator's one write to a robot's own log (issue 12): the robot is queued in a batch job. Appends
 * RobotUpdateQueued (eventId `update-queued:<jobId>`) through the robot's decider, so a redelivered orchestrator step
 * appends nothing twice, and a robot that already started that job (it heard of it from IoT Jobs first) or ended it
 * gets nothing appended (`unchanged`). Throws a ZodError for data that does not match the schema (a bug, not a retry).
 */
export interface QueueUpdateDependencies {
  readonly eventLog: EventLog;
  readonly now: () => Date;
}

export async function queueRobotUpdate(deps: QueueUpdateDependencies, robotId: string, update: UpdateQueuedData): Promise<CommandOutcome> {
  const data = UpdateQueuedData.parse(update);
  return executeRobotCommand(deps.eventLog, robotId, { type: 'QueueUpdate', at: deps.now().toISOString(), update: data }, { now: deps.now });
}
