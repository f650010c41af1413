import { LifecycleEvent, RobotId } from '../../../schemas/index.js';
import { executeRobotCommand } from '../execute-robot-command.js';
import { claimedId, invalid, problemsOf, type IngestDeps, type IngestResult } from './ingest-result.js';

/**
 * An IoT Core lifecycle event (the presence rule delivers it as is) becomes the robot's presence. Any MQTT client
 * produces lifecycle events, so a client id that is not a robot id is someone else's and is left alone.
 */
export async function recordPresence(deps: IngestDeps, payload: unknown): Promise<IngestResult> {
  const parsed = LifecycleEvent.safeParse(payload);
  if (!parsed.success) return invalid(claimedId(payload, 'clientId'), problemsOf(parsed.error));
  const presence = parsed.data;
  if (!RobotId.safeParse(presence.clientId).success) return { status: 'ignored', clientId: presence.clientId };
  const outcome = await executeRobotCommand(
    deps.log,
    presence.clientId,
    { type: 'RecordPresence', presence },
    { now: deps.now },
  );
  return { status: 'recorded', robotId: presence.clientId, outcome };
}
