import type { RecordedEvent } from '../../schemas/index.js';
import { decide, type RobotCommand } from '../domain/robot-decider.js';
import { mergeTelemetry } from '../domain/latest-telemetry.js';
import { fold, initialRobotState } from '../domain/robot-state.js';
import { replayAnswer, type IdempotentRequest } from './idempotency.js';
import type { CommandReceipt, EventLog, RobotHead } from './ports.js';

export type CommandOutcome =
  | {
      readonly status: 'appended';
      readonly head: RobotHead;
      readonly recorded: readonly RecordedEvent[];
      /** Under an Idempotency-Key: the answer recorded with the receipt, which every retry gets again. */
      readonly answer?: unknown;
    }
  /** A person's command already recorded under its Idempotency-Key: the answer it got then. */
  | { readonly status: 'replayed'; readonly head: RobotHead | null; readonly answer: unknown }
  /** Nothing to record: the command changed nothing (a stale presence event, a sample within limits...). */
  | { readonly status: 'unchanged'; readonly head: RobotHead | null }
  /** Already applied before (a redelivery). */
  | { readonly status: 'duplicate'; readonly head: RobotHead | null }
  /** A telemetry sample that changes nothing the head holds (no value newer than the head's, no newer time). */
  | { readonly status: 'stale-sample'; readonly head: RobotHead };

/** Raised when a robot's head kept changing under us; the caller's retry policy (Lambda's) takes over. */
export class ConcurrencyExhausted extends Error {
  override readonly name = 'ConcurrencyExhausted';
}

export interface ExecuteOptions {
  readonly now: () => Date;
  readonly maxAttempts?: number;
  readonly sleep?: (ms: number) => Promise<void>;
  /** A person's command under an Idempotency-Key (idempotency.ts): recorded once, with its answer. */
  readonly idempotency?: {
    readonly request: IdempotentRequest;
    /** The answer to the command, from the head and events the append leaves. */
    answer(head: RobotHead, recorded: readonly RecordedEvent[]): unknown;
  };
}

/**
 * Read the head, decide, append conditioned on the head: optimistic concurrency. A loser re-reads and decides again
 * on the winner's state, so nothing is lost or doubled; a redelivered command is recognised by its eventIds, a
 * person's repeated request by its receipt (read after the head: a receipt written after that read makes the append
 * conflict, and the next round finds it).
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
    const { idempotency } = options;
    if (idempotency) {
      const { callerId, key } = idempotency.request;
      const receipt = await log.readReceipt(robotId, callerId, key);
      if (receipt) return { status: 'replayed', head, answer: replayAnswer(receipt, idempotency.request) };
    }
    const state = head?.state ?? initialRobotState(robotId);
    const merged = command.type === 'RecordTelemetry' ? mergeTelemetry(head?.telemetry ?? null, command.sample) : undefined;
    if (merged && !merged.taken && head) return { status: 'stale-sample', head };
    const sample = merged?.taken ? merged.latest : undefined;
    // The decider sees only the values the sample brought (telemetry is merged per metric).
    const decided = command.type === 'RecordTelemetry' && merged?.taken ? { ...command, sample: merged.taken } : command;
    const events = decide(state, decided, { known: head !== null });
    if (events.length === 0 && !sample) return { status: 'unchanged', head };
    const recordedAt = options.now().toISOString();
    const next = fold(state, events);
    const receipt = idempotency ? receiptOf(idempotency, head, robotId, next, events, sample, recordedAt) : undefined;
    const outcome = await log.append({
      robotId,
      expectedRevision: head?.revision ?? null,
      expectedLastSeq: head?.lastSeq ?? 0,
      events,
      state: next,
      telemetry: sample,
      previousTelemetry: head?.telemetry ?? null,
      outbox: head?.outbox ?? null,
      recordedAt,
      receipt,
    });
    if (outcome.status === 'appended') return receipt ? { ...outcome, answer: receipt.answer } : outcome;
    if (outcome.status === 'duplicate') return { status: 'duplicate', head };
    // Full jitter: racing writers spread out instead of colliding again in lockstep.
    await sleep(Math.random() * Math.min(200, 5 * 2 ** attempt));
  }
  throw new ConcurrencyExhausted(`Robot ${robotId}: the head kept changing during ${maxAttempts} attempts; retry later.`);
}

/**
 * The receipt of a person's command, written with its events. Its answer is made from the head and events the append
 * will leave, computed here as the log computes them (next seqs, one more revision, the sample carried over).
 */
function receiptOf(
  idempotency: NonNullable<ExecuteOptions['idempotency']>,
  head: RobotHead | null,
  robotId: string,
  state: RobotHead['state'],
  events: RecordedEvent['event'][],
  sample: RobotHead['telemetry'] | undefined,
  recordedAt: string,
): CommandReceipt {
  const lastSeq = head?.lastSeq ?? 0;
  const recorded = events.map((event, index): RecordedEvent => ({ seq: lastSeq + 1 + index, recordedAt, event }));
  const after: RobotHead = {
    robotId,
    state,
    lastSeq: recorded.at(-1)?.seq ?? lastSeq,
    revision: (head?.revision ?? 0) + 1,
    telemetry: sample ?? head?.telemetry ?? null,
    outbox: head?.outbox ?? null,
    updatedAt: recordedAt,
  };
  const { callerId, key, route, fingerprint } = idempotency.request;
  return { robotId, callerId, key, route, fingerprint, answer: idempotency.answer(after, recorded), recordedAt };
}
