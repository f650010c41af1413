import type { RecordedEvent } from '../../../schemas/index.js';
import { MarkFailedRequest, RecoverRequest, type CommandResult } from '../../../schemas/index.js';
import type { RobotCommand } from '../../domain/robot-decider.js';
import { telemetryView } from '../../domain/latest-telemetry.js';
import { toRobotView } from '../../domain/robot-view.js';
import { executeRobotCommand } from '../execute-robot-command.js';
import { idempotentRequest } from '../idempotency.js';
import type { EventLog, RobotHead } from '../ports.js';
import { HttpError } from './errors.js';
import { allValid, idempotencyKey, noQuery, parseBody, robotIdParameter, type ApiRequest } from './request.js';

/** What the write routes need: the event log, a clock and an id source (injected so tests can pin them). */
export interface CommandDependencies {
  readonly eventLog: EventLog;
  readonly now: () => Date;
  readonly newEventId: () => string;
}

export function markFailed(request: ApiRequest, deps: CommandDependencies): Promise<CommandResult> {
  const [robotId, key, body] = allValid(
    () => robotIdParameter(request),
    () => idempotencyKey(request),
    () => parseBody(request, MarkFailedRequest),
    () => noQuery(request),
  );
  const at = deps.now().toISOString();
  const command: RobotCommand = { type: 'MarkFailed', eventId: deps.newEventId(), at, reason: body.reason, by: request.caller.id };
  return execute(deps, request, robotId, key, body, command);
}

export function recover(request: ApiRequest, deps: CommandDependencies): Promise<CommandResult> {
  const [robotId, key, body] = allValid(
    () => robotIdParameter(request),
    () => idempotencyKey(request),
    () => parseBody(request, RecoverRequest),
    () => noQuery(request),
  );
  const at = deps.now().toISOString();
  const command: RobotCommand = { type: 'Recover', eventId: deps.newEventId(), at, by: request.caller.id, note: body.note };
  return execute(deps, request, robotId, key, body, command);
}

/**
 * Runs the command through the optimistic-concurrency loop and answers with the robot as the log now has it (the
 * read model follows within a second). A person's command gets a fresh event id every time: its Idempotency-Key is
 * kept in a receipt of its own (idempotency.ts), never as an event id a robot could have taken first. Rejections,
 * a reused key and exhausted retries surface as errors the HTTP layer maps.
 */
async function execute(
  deps: CommandDependencies,
  request: ApiRequest,
  robotId: string,
  key: string | undefined,
  body: unknown,
  command: RobotCommand,
): Promise<CommandResult> {
  const idempotency =
    key === undefined
      ? undefined
      : {
          request: idempotentRequest({ callerId: request.caller.id, key, route: request.routeKey, robotId, body }),
          answer: (head: RobotHead, recorded: readonly RecordedEvent[]) => commandResult(head, recorded, deps.now()),
        };
  const outcome = await executeRobotCommand(deps.eventLog, robotId, command, {
    now: deps.now,
    ...(idempotency ? { idempotency } : {}),
  });
  switch (outcome.status) {
    case 'appended':
      // Under a key, the very answer its receipt keeps, so that a retry's answer is this one to the byte.
      return (outcome.answer as CommandResult | undefined) ?? commandResult(outcome.head, outcome.recorded, deps.now());
    case 'replayed':
      return outcome.answer as CommandResult;
    default:
      // Nothing new (an event id already in the log): the robot as it stands.
      if (!outcome.head) throw new HttpError(404, 'ROBOT_NOT_FOUND', `Robot ${robotId} is not known to the fleet.`);
      return commandResult(outcome.head, [], deps.now());
  }
}

function commandResult(head: RobotHead, recorded: readonly RecordedEvent[], now: Date): CommandResult {
  const online = head.state.presence.status === 'online';
  return {
    robot: toRobotView(head.state, head.lastSeq, telemetryView(head.telemetry, online, now)),
    appended: recorded.map(({ seq, event }) => ({ seq, type: event.type, eventId: event.eventId })),
  };
}
