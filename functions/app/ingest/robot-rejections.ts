import type { ChannelMessage } from './channel-message.js';
import type { ChannelRecord } from './ingest-channel.js';
import { reasonOf, topicOf } from './problems.js';

/**
 * What one robot's messages in one ingest batch had refused for good: the robot's own telemetry and events (a whole
 * message, or single events of a batch), not IoT Core's lifecycle events. Pure; the ingest records it as one
 * DeviceMessagesRejected event, so the robot's view counts them (ingest-channel.ts).
 */
export interface BatchRejections {
  readonly count: number;
  readonly lastReason: string;
  readonly lastTopic: string | null;
  /** The first refused message: its record names the event, and a retry that must record it starts there. */
  readonly firstIndex: number;
}

export function rejectionsIn(
  entries: readonly { readonly record: ChannelRecord; readonly message: ChannelMessage }[],
  /** Only messages before this index count (those after it are delivered again and counted then). */
  before: number = entries.length,
): BatchRejections | null {
  let count = 0;
  let firstIndex = -1;
  let last: { reason: string; topic: string | null } | null = null;
  entries.slice(0, before).forEach(({ record, message }, index) => {
    const refused = refusedIn(message);
    if (refused.length === 0) return;
    count += refused.length;
    if (firstIndex < 0) firstIndex = index;
    last = { reason: refused.at(-1)!, topic: topicOf(record.data) };
  });
  if (count === 0 || !last) return null;
  const { reason, topic } = last;
  return { count, lastReason: reason, lastTopic: topic, firstIndex };
}

/** The reasons of what a message had refused: the message itself, or each refused event of a batch. */
function refusedIn(message: ChannelMessage): string[] {
  switch (message.kind) {
    case 'invalid':
      return message.ingestKind === 'telemetry' || message.ingestKind === 'events' ? [reasonOf(message.problems)] : [];
    case 'events':
      return message.events.flatMap((entry) => (entry.valid ? [] : [reasonOf(entry.problems)]));
    default:
      return [];
  }
}
