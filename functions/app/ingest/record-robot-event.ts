import { AgentEvent, AgentEventBatch } from '../../../schemas/index.js';
import { executeRobotCommand, type CommandOutcome } from '../execute-robot-command.js';
import type { IngestDeps, IngestResult } from './ingest-result.js';
import { readThingMessage } from './thing-message.js';

/**
 * Facts the agent reports (teleoperation started or stopped, events dropped), appended once however often they are
 * redelivered. A batch (the agent's backlog after being offline) is appended one event after another in its order:
 * IoT Core invokes this asynchronously per message, so only within one message is the order guaranteed. If an
 * append fails the whole message is retried; the events already appended are recognised by their eventId.
 */
export async function recordRobotEvent(deps: IngestDeps, payload: unknown): Promise<IngestResult> {
  // Parsed as what it says it is, so a bad field is named (a union would only say "no variant matched").
  const batch = typeof payload === 'object' && payload !== null && 'events' in payload;
  const message = batch ? readThingMessage(payload, AgentEventBatch) : readThingMessage(payload, AgentEvent);
  if (!message.valid) return message.rejection;
  const events: AgentEvent[] = 'events' in message.body ? message.body.events : [message.body];
  const outcomes: CommandOutcome[] = [];
  for (const event of events) {
    outcomes.push(await executeRobotCommand(deps.log, message.robotId, { type: 'RecordAgentEvent', event }, { now: deps.now }));
  }
  return { status: 'recorded', robotId: message.robotId, outcome: combined(outcomes) };
}

/** One outcome for a batch: appended if anything was (with everything recorded), else the last event's. */
function combined(outcomes: readonly CommandOutcome[]): CommandOutcome {
  const appended = outcomes.filter((outcome) => outcome.status === 'appended');
  const last = appended.at(-1);
  if (!last) return outcomes.at(-1)!;
  return { status: 'appended', head: last.head, recorded: appended.flatMap((outcome) => outcome.recorded) };
}
