import type { DynamoDBBatchResponse, DynamoDBRecord } from 'aws-lambda';
import { WILDCARD, type LiveMessage } from '../../../schemas/index.js';
import { settleConcurrently } from '../../platform/concurrency.js';
import { logger, metrics, MetricUnit } from '../../platform/observability.js';
import type { StreamRecordReader } from '../ports.js';
import type { ConnectionStore, LiveNotifier, Watcher } from './ports.js';
import { inRobotOrder, liveMessagesOf } from './live-messages.js';
import { countPushProblems, newTally, pushInOrder } from './push.js';
import { readStreamItems } from './stream-items.js';

export interface BroadcastDeps {
  readonly connections: ConnectionStore;
  readonly notifier: LiveNotifier;
  /** How many connections are pushed to (and subscriptions looked up) at once. */
  readonly concurrency: number;
  /** The clock the pushed telemetry's ages are counted to (the real one unless a test pins it). */
  readonly now?: () => Date;
}

/** A message and the stream record it came from. */
interface Pending {
  readonly recordIndex: number;
  readonly sequenceNumber: string;
  readonly message: LiveMessage;
}

/** Who watches each robot of the batch: the connections subscribed to it and those subscribed to `*`. */
export interface Audience {
  /** subscription key (robot id or `*`) → its watchers; a key whose lookup failed is absent. */
  readonly subscribers: ReadonlyMap<string, readonly Watcher[]>;
}

/**
 * Pushes the event log stream to the WebSocket connections watching each robot. Live updates are best effort (the
 * dashboard re-reads the API when it reconnects): a failed push is logged and counted, a gone connection is removed,
 * a malformed record is skipped (the projector sets poison records aside). Only a failed subscription lookup fails
 * the batch, from the first record it affects, so Lambda retries what could not be delivered and nothing before it.
 * A connection with a coalesced telemetry rate gets every domain event but no `RobotTelemetry`: the stream coalescer
 * (coalesce.ts) sends it the robots' latest views instead.
 */
export function streamBroadcaster(readRecord: StreamRecordReader) {
  return (records: readonly DynamoDBRecord[], deps: BroadcastDeps) => broadcastStreamBatch(records, deps, readRecord);
}

async function broadcastStreamBatch(
  records: readonly DynamoDBRecord[],
  deps: BroadcastDeps,
  readRecord: StreamRecordReader,
): Promise<DynamoDBBatchResponse> {
  metrics.addMetric('StreamRecordsRead', MetricUnit.Count, records.length);
  const pending = readMessages(records, deps.now?.() ?? new Date(), readRecord);
  if (pending.length === 0) return { batchItemFailures: [] };

  const audience = await lookUpAudience(
    pending.map(({ message }) => message.robotId),
    deps,
  );
  const blocked = pending.find(
    ({ message }) => !audience.subscribers.has(WILDCARD) || !audience.subscribers.has(message.robotId),
  );
  const deliverable = blocked ? pending.filter((item) => item.recordIndex < blocked.recordIndex) : pending;
  await deliver(deliverable, audience, deps);
  return { batchItemFailures: blocked ? [{ itemIdentifier: blocked.sequenceNumber }] : [] };
}

function readMessages(records: readonly DynamoDBRecord[], now: Date, readRecord: StreamRecordReader): Pending[] {
  return readStreamItems(records, readRecord).flatMap(({ recordIndex, sequenceNumber, item }) =>
    liveMessagesOf(item, now).map((message) => ({ recordIndex, sequenceNumber, message })),
  );
}

/** One Query per subscription key of the batch: `*` once, each robot once. A failed lookup is logged and left out. */
export async function lookUpAudience(
  robotIds: readonly string[],
  deps: Pick<BroadcastDeps, 'connections' | 'concurrency'>,
): Promise<Audience> {
  const keys = [WILDCARD, ...new Set(robotIds)];
  const results = await settleConcurrently(keys, deps.concurrency, (key) => deps.connections.watchersOf(key));
  const subscribers = new Map<string, readonly Watcher[]>();
  results.forEach((result, index) => {
    const key = keys[index] as string;
    if (result.status === 'fulfilled') {
      subscribers.set(key, result.value);
    } else {
      logger.error('Could not look up the connections subscribed to a robot; the batch will be retried', {
        subscription: key,
        error: result.reason as Error,
      });
    }
  });
  return { subscribers };
}

/** Each connection gets its messages one after another (so in order); connections are served in parallel. */
async function deliver(pending: readonly Pending[], audience: Audience, deps: BroadcastDeps): Promise<void> {
  const outboxes = new Map<string, { messages: LiveMessage[]; via: Set<string> }>();
  const wildcard = audience.subscribers.get(WILDCARD) ?? [];
  for (const { message } of inRobotOrder(pending)) {
    const watchers = [
      ...wildcard.map((watcher) => ({ ...watcher, via: WILDCARD })),
      ...(audience.subscribers.get(message.robotId) ?? []).map((watcher) => ({ ...watcher, via: message.robotId })),
    ];
    for (const { connectionId, telemetry, via } of watchers) {
      // Raw samples only to raw connections; the coalescer serves the others.
      if (message.type === 'RobotTelemetry' && telemetry !== 'raw') continue;
      const outbox = outboxes.get(connectionId) ?? { messages: [], via: new Set<string>() };
      // Subscribed to both `*` and the robot: one copy of each message.
      if (outbox.messages.at(-1) !== message) outbox.messages.push(message);
      outbox.via.add(via);
      outboxes.set(connectionId, outbox);
    }
  }
  const tally = newTally();
  await settleConcurrently([...outboxes], deps.concurrency, ([connectionId, outbox]) =>
    pushInOrder(connectionId, outbox.messages, [...outbox.via], deps, tally, (message) => ({ robotId: message.robotId, seq: message.seq })),
  );
  metrics.addMetric('LiveMessagesSent', MetricUnit.Count, tally.sent);
  countPushProblems(tally);
}
