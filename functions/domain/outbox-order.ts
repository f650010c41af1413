import type { OutboxPosition } from '../../schemas/index.js';

/**
 * How the cloud keeps a robot's events in its outbox's order, whatever the channel does to the messages (lose them,
 * deliver them twice, deliver a resend after a later message). Pure; the ingest consumer and the property test that
 * plays agent, channel and cloud against each other both use it.
 *
 * INVARIANTS
 * - The mark `{ id, through }` (kept in the robot's head) says: every event of outbox `id` up to position `through`
 *   is handled (appended, recognised as already there, changing nothing, or refused for good).
 * - An event is handled only at position `through + 1`: nothing is appended while an earlier event of the same
 *   outbox is missing, so the log keeps the outbox's order.
 * - `after` in a message is the agent's promise that positions up to it are settled on its side (acknowledged, or
 *   dropped because its queue was full), so the cloud does not wait for those; the mark only ever moves forward.
 * - A new outbox id (a re-imaged robot, a queue that was lost) starts a new order at its own `after`; the eventIds
 *   keep a resend of something already in the log from being appended twice.
 */

export interface OutboxMark {
  readonly id: string;
  readonly through: number;
}

/** What to do with the event at `position`, given the outbox is handled through `through`. */
export type PositionVerdict =
  /** The next one: handle it, then the mark moves to it. */
  | 'next'
  /** Already handled (a duplicate or a resend): acknowledge it again, nothing else. */
  | 'settled'
  /** An earlier event has not arrived: refuse this and everything after it, and ask for a resend. */
  | 'gap';

/** Where the outbox stands when a message from it arrives: the mark to compare its positions with. */
export function markBefore(mark: OutboxMark | null, position: Pick<OutboxPosition, 'id' | 'after'>): OutboxMark {
  if (!mark || mark.id !== position.id) return { id: position.id, through: position.after };
  return { id: mark.id, through: Math.max(mark.through, position.after) };
}

export function verdictFor(mark: OutboxMark, position: number): PositionVerdict {
  if (position <= mark.through) return 'settled';
  return position === mark.through + 1 ? 'next' : 'gap';
}
