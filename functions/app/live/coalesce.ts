import type { DynamoDBBatchResponse, DynamoDBRecord } from 'aws-lambda';
import { WILDCARD, type RobotView, type RobotsUpdated } from '../../../schemas/index.js';
import { settleConcurrently } from '../../platform/concurrency.js';
import { logger, metrics, MetricUnit } from '../../platform/observability.js';
import { telemetryView } from '../../domain/latest-telemetry.js';
import { toRobotView } from '../../domain/robot-view.js';
import type { RobotHead, StreamRecordReader } from '../ports.js';
import type { ConnectionStore, LiveNotifier, Watcher } from './ports.js';
import { lookUpAudience } from './broadcast.js';
import { countPushProblems, newTally, pushInOrder } from './push.js';
import { readStreamItems } from './stream-items.js';
import { chunkRobotsUpdated, latestPerRobot } from './robots-updated.js';

export interface CoalesceDeps {
  readonly connections: ConnectionStore;
  readonly notifier: LiveNotifier;
  /** How many connections are pushed to (and subscriptions looked up) at once. */
  readonly concurrency: number;
  /** The clock of the round (`at`, telemetry ages); the real one unless a test pins it. */
  readonly now?: () => Date;
}

/** A head write of the batch and the stream record it came from. */
interface HeadWrite {
  readonly recordIndex: number;
  readonly sequenceNumber: string;
  readonly robotId: string;
  readonly revision: number;
  readonly head: RobotHead;
}

/** What one connection gets this round: every robot of the batch (it watches `*`) or those it watches by id. */
interface Round {
  all: boolean;
  readonly robots: Set<string>;
  readonly via: Set<string>;
}

/**
 * The stream coalescer: for connections with a coalesced telemetry rate (not `raw`), one round per batch of head
 * writes (the event source mapping's batching window makes that about one a second): the latest RobotView of each
 * robot the connection watches whose head was written in the batch, each robot once, in RobotsUpdated messages under
 * API Gateway's size limit. Raw connections are left to the broadcaster, which in turn sends rated ones no samples.
 *
 * Failures follow the broadcaster's rules: a failed push is logged and counted, a gone connection is removed, a
 * malformed record is skipped; a failed subscription lookup fails the batch from the first record it affects (what
 * came before it is coalesced and pushed now, the rest is retried).
 */
export function streamCoalescer(readRecord: StreamRecordReader) {
  return (records: readonly DynamoDBRecord[], deps: CoalesceDeps) => coalesceStreamBatch(records, deps, readRecord);
}

async function coalesceStreamBatch(
  records: readonly DynamoDBRecord[],
  deps: CoalesceDeps,
  readRecord: StreamRecordReader,
): Promise<DynamoDBBatchResponse> {
  metrics.addMetric('StreamRecordsRead', MetricUnit.Count, records.length);
  const writes = readHeadWrites(records, readRecord);
  if (writes.length === 0) return { batchItemFailures: [] };

  const audience = await lookUpAudience(
    writes.map((write) => write.robotId),
    deps,
  );
  const blocked = writes.find((write) => !audience.subscribers.has(WILDCARD) || !audience.subscribers.has(write.robotId));
  const deliverable = blocked ? writes.filter((write) => write.recordIndex < blocked.recordIndex) : writes;
  const latest = latestPerRobot(deliverable);
  const rated = (key: string) => (audience.subscribers.get(key) ?? []).filter(isCoalesced);
  const rounds = roundsOf(latest.keys(), rated);
  if (rounds.size > 0) {
    const now = deps.now?.() ?? new Date();
    await deliver(rounds, latest, now, deps);
  }
  return { batchItemFailures: blocked ? [{ itemIdentifier: blocked.sequenceNumber }] : [] };
}

const isCoalesced = (watcher: Watcher) => watcher.telemetry !== 'raw';

function readHeadWrites(records: readonly DynamoDBRecord[], readRecord: StreamRecordReader): HeadWrite[] {
  return readStreamItems(records, readRecord).flatMap(({ recordIndex, sequenceNumber, item }) =>
    item.kind === 'head' ? [{ recordIndex, sequenceNumber, robotId: item.head.robotId, revision: item.head.revision, head: item.head }] : [],
  );
}

/** Each coalesced connection's round: `*` watchers get every robot, the others the robots they watch by id. */
function roundsOf(robotIds: Iterable<string>, rated: (key: string) => Watcher[]): Map<string, Round> {
  const rounds = new Map<string, Round>();
  const roundOf = (connectionId: string) => {
    const round = rounds.get(connectionId) ?? { all: false, robots: new Set<string>(), via: new Set<string>() };
    rounds.set(connectionId, round);
    return round;
  };
  for (const { connectionId } of rated(WILDCARD)) {
    const round = roundOf(connectionId);
    round.all = true;
    round.via.add(WILDCARD);
  }
  for (const robotId of robotIds) {
    for (const { connectionId } of rated(robotId)) {
      const round = roundOf(connectionId);
      round.robots.add(robotId);
      round.via.add(robotId);
    }
  }
  return rounds;
}

/** Views are made once per robot, the whole fleet's messages once for all `*` watchers; connections in parallel. */
async function deliver(rounds: Map<string, Round>, latest: Map<string, HeadWrite>, now: Date, deps: CoalesceDeps) {
  const at = now.toISOString();
  const views = new Map<string, RobotView>();
  const viewOf = (robotId: string): RobotView => {
    let view = views.get(robotId);
    if (!view) {
      const { head } = latest.get(robotId) as HeadWrite;
      view = toRobotView(head.state, head.lastSeq, telemetryView(head.telemetry, head.state.presence.status === 'online', now));
      views.set(robotId, view);
    }
    return view;
  };
  let everyRobot: RobotsUpdated[] | undefined;
  const messagesOf = (round: Round): RobotsUpdated[] => {
    if (round.all) return (everyRobot ??= chunk([...latest.keys()].map(viewOf), at));
    return chunk([...round.robots].map(viewOf), at);
  };

  const tally = newTally();
  await settleConcurrently([...rounds], deps.concurrency, ([connectionId, round]) =>
    pushInOrder(connectionId, messagesOf(round), [...round.via], deps, tally, (message) => ({ type: message.type, robots: message.robots.length })),
  );
  metrics.addMetric('RobotsCoalesced', MetricUnit.Count, latest.size);
  metrics.addMetric('RobotsUpdatedSent', MetricUnit.Count, tally.sent);
  countPushProblems(tally);
}

function chunk(views: readonly RobotView[], at: string): RobotsUpdated[] {
  const { messages, oversized } = chunkRobotsUpdated(views, at);
  if (oversized.length > 0) {
    logger.error('Robot views too large for one WebSocket message were left out of RobotsUpdated', { robotIds: oversized.slice(0, 20) });
    metrics.addMetric('RobotViewTooLarge', MetricUnit.Count, oversized.length);
  }
  return messages;
}
