import { MarkFailedRequest, RecoverRequest, type CommandResult } from '../../../schemas/index.js';
import type { RobotCommand } from '../../domain/robot-decider.js';
import { toRobotView } from '../../domain/robot-view.js';
import { executeRobotCommand } from '../execute-robot-command.js';
import type { EventLog } from '../ports.js';
import { HttpError } from './errors.js';
import { allValid, idempotencyKey, parseBody, robotIdParameter, type ApiRequest } from './request.js';

/** What the write routes need: the event log, a clock and an id source (injected so tests can pin them). */
export interface CommandDependencies {
  readonly eventLog: EventLog;
  readonly now: () => Date;
  readonly newEventId: () => string;
}

export function markFailed(request: ApiRequest, deps: CommandDependencies): Promise<CommandResult> {
  const [robotId, key, { reason }] = allValid(
    () => robotIdParameter(request),
    () => idempotencyKey(request),
    () => parseBody(request, MarkFailedRequest),
  );
  const eventId = commandEventId(key, deps);
  const at = deps.now().toISOString();
  return execute(deps, robotId, { type: 'MarkFailed', eventId, at, reason, by: request.caller.id });
}

export function recover(request: ApiRequest, deps: CommandDependencies): Promise<CommandResult> {
  const [robotId, key, { note }] = allValid(
    () => robotIdParameter(request),
    () => idempotencyKey(request),
    () => parseBody(request, RecoverRequest),
  );
  const eventId = commandEventId(key, deps);
  const at = deps.now().toISOString();
  return execute(deps, robotId, { type: 'Recover', eventId, at, by: request.caller.id, note });
}

/**
 * The event id of a person's command: the caller's Idempotency-Key, namespaced so that no key can take an id the
 * decider derives for robot facts (`presence:…`, `alert:…`), or a fresh id when no key was sent.
 */
function commandEventId(key: string | undefined, deps: CommandDependencies): string {
  return key === undefined ? deps.newEventId() : `request:${key}`;
}

/**
 * Runs the command through the optimistic-concurrency loop and answers with the robot as the log now has it (the
 * read model follows within a second). Rejections and exhausted retries surface as errors the HTTP layer maps.
 */
async function execute(deps: CommandDependencies, robotId: string, command: RobotCommand): Promise<CommandResult> {
  const outcome = await executeRobotCommand(deps.eventLog, robotId, command, { now: deps.now });
  if (outcome.status === 'appended') {
    return {
      robot: toRobotView(outcome.head.state, outcome.head.lastSeq, outcome.head.telemetry),
      appended: outcome.recorded.map(({ seq, event }) => ({ seq, type: event.type, eventId: event.eventId })),
    };
  }
  // A repeated Idempotency-Key: the command was applied before, so the answer is the robot as it stands, nothing new.
  if (!outcome.head) throw new HttpError(404, 'ROBOT_NOT_FOUND', `Robot ${robotId} is not known to the fleet.`);
  return { robot: toRobotView(outcome.head.state, outcome.head.lastSeq, outcome.head.telemetry), appended: [] };
}
