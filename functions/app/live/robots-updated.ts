import { LIVE_MESSAGE_MAX_BYTES, type RobotView, type RobotsUpdated } from '../../../schemas/index.js';

/**
 * The pure core of coalesced telemetry (`RobotsUpdated`): which write of each robot's head is the latest, and how a
 * round of views is cut into messages API Gateway accepts.
 *
 * INVARIANTS
 * - latestPerRobot keeps exactly one update per robot: the one with the highest revision (a head's revision grows with
 *   every write of it), whatever the order the updates came in.
 * - chunkRobotsUpdated puts every view it is given in exactly one message, unless that view alone cannot fit (then it
 *   is named in `oversized` and in no message); every message's JSON is under `maxBytes` bytes of UTF-8; no message
 *   is empty.
 */

/** A write of a robot's head, as far as ordering goes. */
export interface Revisioned {
  readonly robotId: string;
  readonly revision: number;
}

/** Each robot's latest update (highest revision; of equal revisions, the later one in `updates`). */
export function latestPerRobot<T extends Revisioned>(updates: Iterable<T>): Map<string, T> {
  const latest = new Map<string, T>();
  for (const update of updates) {
    const held = latest.get(update.robotId);
    if (!held || update.revision >= held.revision) latest.set(update.robotId, update);
  }
  return latest;
}

export interface Chunked {
  readonly messages: RobotsUpdated[];
  /** Robots whose view alone is over the limit (none in practice: a RobotView is a few KB at most). */
  readonly oversized: string[];
}

const byteLength = (text: string) => Buffer.byteLength(text, 'utf8');

/**
 * One round's views as `RobotsUpdated` messages, filled greedily in the given order. A message's size is counted
 * exactly as JSON.stringify writes it: the envelope, each view, and a comma between views.
 */
export function chunkRobotsUpdated(views: readonly RobotView[], at: string, maxBytes: number = LIVE_MESSAGE_MAX_BYTES): Chunked {
  const envelope = byteLength(JSON.stringify({ type: 'RobotsUpdated', at, robots: [] } satisfies RobotsUpdated));
  const messages: RobotsUpdated[] = [];
  const oversized: string[] = [];
  let robots: RobotView[] = [];
  let size = envelope;
  const flush = () => {
    if (robots.length > 0) messages.push({ type: 'RobotsUpdated', at, robots });
    robots = [];
    size = envelope;
  };
  for (const view of views) {
    const bytes = byteLength(JSON.stringify(view));
    if (envelope + bytes >= maxBytes) {
      oversized.push(view.robotId);
      continue;
    }
    const grown = size + bytes + (robots.length > 0 ? 1 : 0);
    if (grown >= maxBytes) {
      flush();
      robots.push(view);
      size = envelope + bytes;
    } else {
      robots.push(view);
      size = grown;
    }
  }
  flush();
  return { messages, oversized };
}
