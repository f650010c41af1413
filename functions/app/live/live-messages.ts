import type { LiveMessage } from '../../../schemas/index.js';
import type { StreamItem } from '../ports.js';
import { telemetryView } from '../../domain/latest-telemetry.js';
import { assertNever } from '../../../lib/assert-never.js';

/**
 * What the dashboard is told about one item of the event log: each domain event as it was recorded, and each new
 * telemetry sample as `RobotTelemetry` (numbered with the head's last event, so it sorts after that event). Its data
 * is the robot's whole latest telemetry as the API shows it (TelemetryView: every metric with its value, time, age at
 * `now` and staleness), not just the sample that came: a sample may carry only some metrics.
 * Markers, and heads written without a new sample, say nothing new.
 */
export function liveMessagesOf(item: StreamItem, now: Date): LiveMessage[] {
  switch (item.kind) {
    case 'event': {
      const { seq, event } = item.recorded;
      return [{ type: event.type, robotId: event.robotId, seq, at: event.at, data: { ...event.data } }];
    }
    case 'head': {
      const { head } = item;
      const telemetry = head.telemetryChanged ? telemetryView(head.telemetry, head.state.presence.status === 'online', now) : null;
      if (!telemetry) return [];
      // A sample that answers POST /api/v2/discover says which one, so the dashboard can match the answers to its request.
      const answers = head.telemetryRequestId !== undefined ? { requestId: head.telemetryRequestId } : {};
      return [{ type: 'RobotTelemetry', robotId: head.robotId, seq: head.lastSeq, at: telemetry.sampledAt, data: { ...telemetry }, ...answers }];
    }
    case 'ignored':
      return [];
    default:
      return assertNever(item);
  }
}

/**
 * Each robot's messages in sequence order (a telemetry sample after the event of the same number), robots in the
 * order they first appear. Stream records of one transaction need not arrive in key order.
 */
export function inRobotOrder<T extends { readonly message: LiveMessage }>(items: readonly T[]): T[] {
  const byRobot = new Map<string, T[]>();
  for (const item of items) {
    const list = byRobot.get(item.message.robotId) ?? [];
    list.push(item);
    byRobot.set(item.message.robotId, list);
  }
  const rank = (message: LiveMessage) => message.seq * 2 + (message.type === 'RobotTelemetry' ? 1 : 0);
  return [...byRobot.values()].flatMap((list) => list.sort((a, b) => rank(a.message) - rank(b.message)));
}
