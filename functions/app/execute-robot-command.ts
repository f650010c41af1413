import type { RecordedEvent } from '../../schemas/index.js';
import { CommandRejected, decide, type RobotCommand } from '../domain/robot-decider.js';
import { fold, initialRobotState } from '../domain/robot-state.js';
import type { EventLog, RobotHead } from './ports.js';

export type CommandOutcome =
  | { readonly status: 'appended'; readonly head: RobotHead; readonly recorded: readonly RecordedEvent[] }
  /** Nothing to record: the command changed nothing (a stale presence event, a sample within limits...). */
  | { readonly status: 'unchanged'; readonly head: RobotHead | null }
  /** Already applied before (a redelivery). */
  | { readonly status: 'duplicate'; readonly head: RobotHead | null }
  /** A telemetry sample older than the one the head holds. */
  | { readonly status: 'stale-sample'; readonly head: RobotHead };

/** Raised when a robot's head kept changing under us; the caller's retry policy (Lambda's) takes over. */
export class ConcurrencyExhausted extends Error {
  override readonly name = 'ConcurrencyExhausted';
}

export interface ExecuteOptions {
  readonly now: () => Date;
  readonly maxAttempts?: number;
  readonly sleep?: (ms: number) => Promise<void>;
}

/**
 * Read the head, decide, append conditioned on the head: optimistic concurrency. A loser re-reads and decides again
 * on the winner's state, so nothing is lost or doubled; a redelivered command is recognised by its eventIds.
 */
export async function executeRobotCommand(
  log: EventLog,
  robotId: string,
  command: RobotCommand,
  options: ExecuteOptions,
): Promise<CommandOutcome> {
  const maxAttempts = options.maxAttempts ?? 10;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    const head = await log.readHead(robotId);
    const state = head?.state ?? initialRobotState(robotId);
    const sample = command.type === 'RecordTelemetry' ? command.sample : undefined;
    if (sample && head?.telemetry && Date.parse(sample.sampledAt) <= Date.parse(head.telemetry.sampledAt)) {
      return { status: 'stale-sample', head };
    }
    let events;
    try {
      events = decide(state, command, { known: head !== null });
    } catch (error) {
      // A command from a person carries its own id (an Idempotency-Key): if that id is already in the log, the
      // command was applied before and the state it left is why it is refused now. That is a redelivery, not an error.
      if (error instanceof CommandRejected && 'eventId' in command && (await log.hasEvent(robotId, command.eventId))) {
        return { status: 'duplicate', head };
      }
      throw error;
    }
    if (events.length === 0 && !sample) return { status: 'unchanged', head };
    const outcome = await log.append({
      robotId,
      expectedRevision: head?.revision ?? null,
      expectedLastSeq: head?.lastSeq ?? 0,
      events,
      state: fold(state, events),
      telemetry: sample,
      previousTelemetry: head?.telemetry ?? null,
      outbox: head?.outbox ?? null,
      recordedAt: options.now().toISOString(),
    });
    if (outcome.status === 'appended') return outcome;
    if (outcome.status === 'duplicate') return { status: 'duplicate', head };
    // Full jitter: racing writers spread out instead of colliding again in lockstep.
    await sleep(Math.random() * Math.min(200, 5 * 2 ** attempt));
  }
  throw new ConcurrencyExhausted(`Robot ${robotId}: the head kept changing during ${maxAttempts} attempts; retry later.`);
}
