import type { DynamoDBBatchResponse, DynamoDBRecord } from 'aws-lambda';
import { WILDCARD, type DeploymentChanged } from '../../../schemas/index.js';
import type { DeploymentHead } from '../../domain/deployment.js';
import { settleConcurrently } from '../../platform/concurrency.js';
import { countInvalid, logger, metrics, MetricUnit } from '../../platform/observability.js';
import { toDeploymentSummary } from '../deployments/deployment-view.js';
import type { ConnectionStore, LiveNotifier } from './ports.js';
import { countPushProblems, newTally, pushInOrder } from './push.js';

/**
 * The deployments table's stream → `DeploymentChanged` on every connection subscribed to `*` (issue 12).
 *
 * Why the stream and not a push from the orchestrator after its commit: the head item is written only by a committed
 * decision (DynamoDeploymentStore.create / commit, each conditioned on the revision and moving it by one), and every
 * writer of it — the orchestrator, the http-api's POST and actions, a rollback started by another deployment — lands
 * on the stream. A push after the commit would be lost when the writer dies between the two, and each writer would
 * have to remember to push. The stream consumer is retried by its event source mapping instead.
 *
 * INVARIANTS
 * - a message is made only from a head image (`deployment#<id>` / `head`) with a revision; any other record (robot,
 *   event, effect, marker, list, key — the mapping's filter drops them already) or an unreadable one makes none;
 * - per deployment, the messages of a batch go out in revision order, each revision at most once per batch (a record
 *   repeated in the batch is one message): pushes are ordered, never coalesced across revisions;
 * - a failed lookup of the `*` subscribers fails the batch from its first message, so the mapping retries it; a
 *   failed push to one connection is logged and counted (live pushes are best effort; the dashboard re-reads).
 */

const HEAD_SK = 'head';
const PARTITION_PREFIX = 'deployment#';

/** The live message for one image of the deployments table, or null when it is not a deployment's head. */
export function deploymentChangedOf(image: Record<string, unknown> | undefined): DeploymentChanged | null {
  if (!image || image.sk !== HEAD_SK || typeof image.pk !== 'string' || !image.pk.startsWith(PARTITION_PREFIX)) return null;
  const revision = image.revision;
  const head = image.head as DeploymentHead | undefined;
  if (typeof revision !== 'number' || !Number.isInteger(revision) || revision < 1 || typeof head !== 'object' || head === null) return null;
  const summary = toDeploymentSummary(head);
  return {
    type: 'DeploymentChanged',
    deploymentId: summary.deploymentId,
    state: summary.state,
    reason: summary.reason,
    counts: summary.counts,
    batches: summary.batches,
    updatedAt: summary.updatedAt,
    revision,
  };
}

/** A stream record's new image as plain values (the adapter's codec: functions/adapters/deployment-stream-items.ts). */
export type StreamImageReader = (record: DynamoDBRecord) => Record<string, unknown> | undefined;

interface Pending {
  readonly recordIndex: number;
  readonly sequenceNumber: string;
  readonly message: DeploymentChanged;
}

/** The batch's head images as messages: unreadable records skipped, each deployment's in revision order, no repeats. */
export function deploymentChangesIn(records: readonly DynamoDBRecord[], readImage: StreamImageReader): Pending[] {
  const pending: Pending[] = [];
  records.forEach((record, recordIndex) => {
    const sequenceNumber = record.dynamodb?.SequenceNumber ?? '';
    let message: DeploymentChanged | null;
    try {
      message = deploymentChangedOf(readImage(record));
    } catch (error) {
      logger.warn('Skipped a malformed deployments stream record', { sequenceNumber, reason: error instanceof Error ? error.message.slice(0, 500) : String(error) });
      countInvalid('StreamRecord');
      return;
    }
    if (message) pending.push({ recordIndex, sequenceNumber, message });
  });
  const seen = new Set<string>();
  const unique = pending.filter(({ message }) => {
    const key = `${message.deploymentId}#${message.revision}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  // Stable: deployments keep the order they first appear in, each one's revisions ascend.
  const first = new Map<string, number>();
  unique.forEach(({ message }, i) => first.has(message.deploymentId) || first.set(message.deploymentId, i));
  return unique.sort(
    (a, b) => (first.get(a.message.deploymentId) as number) - (first.get(b.message.deploymentId) as number) || a.message.revision - b.message.revision,
  );
}

export interface DeploymentChangeDeps {
  readonly connections: ConnectionStore;
  readonly notifier: LiveNotifier;
  /** How many connections are pushed to at once. */
  readonly concurrency: number;
}

/** The consumer, reading records with the adapter's codec (functions/adapters/stream-consumers.ts binds it). */
export function streamDeploymentChangeBroadcaster(readImage: StreamImageReader) {
  return (records: readonly DynamoDBRecord[], deps: DeploymentChangeDeps) => broadcastDeploymentChanges(records, deps, readImage);
}

async function broadcastDeploymentChanges(records: readonly DynamoDBRecord[], deps: DeploymentChangeDeps, readImage: StreamImageReader): Promise<DynamoDBBatchResponse> {
  metrics.addMetric('StreamRecordsRead', MetricUnit.Count, records.length);
  const pending = deploymentChangesIn(records, readImage);
  if (pending.length === 0) return { batchItemFailures: [] };
  let watchers;
  try {
    watchers = await deps.connections.watchersOf(WILDCARD);
  } catch (error) {
    logger.error('Could not look up the connections subscribed to the fleet; the batch will be retried', { error: error as Error });
    // The earliest record that makes a message: Lambda retries from it (the ones before made none).
    const firstIndex = Math.min(...pending.map(({ recordIndex }) => recordIndex));
    return { batchItemFailures: [{ itemIdentifier: pending.find(({ recordIndex }) => recordIndex === firstIndex)?.sequenceNumber ?? '' }] };
  }
  const messages = pending.map(({ message }) => message);
  const tally = newTally();
  await settleConcurrently(watchers, deps.concurrency, ({ connectionId }) =>
    pushInOrder(connectionId, messages, [WILDCARD], deps, tally, (message) => ({ deploymentId: message.deploymentId, revision: message.revision })),
  );
  metrics.addMetric('LiveMessagesSent', MetricUnit.Count, tally.sent);
  countPushProblems(tally);
  return { batchItemFailures: [] };
}
