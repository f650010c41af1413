import { logger, metrics, MetricUnit } from '../../platform/observability.js';
import type { ConnectionStore, LiveNotifier, LivePush } from './ports.js';

/** What became of the pushes of one batch; counted once per batch rather than once per push. */
export interface PushTally {
  sent: number;
  failed: number;
  gone: number;
}

export const newTally = (): PushTally => ({ sent: 0, failed: 0, gone: 0 });

/** The batch's failed and gone pushes as metrics (the sent count is each consumer's own metric). */
export function countPushProblems(tally: PushTally): void {
  if (tally.failed > 0) metrics.addMetric('LivePushFailed', MetricUnit.Count, tally.failed);
  if (tally.gone > 0) metrics.addMetric('GoneConnections', MetricUnit.Count, tally.gone);
}

/**
 * Pushes one connection's messages one after another, so in order. A failed push is logged (with `describe`'s
 * fields) and counted, and the next is tried; a connection API Gateway says is gone gets nothing more and is removed.
 */
export async function pushInOrder<M extends LivePush>(
  connectionId: string,
  messages: readonly M[],
  subscribedTo: readonly string[],
  deps: { readonly connections: ConnectionStore; readonly notifier: LiveNotifier },
  tally: PushTally,
  describe: (message: M) => Record<string, unknown>,
): Promise<void> {
  for (const message of messages) {
    let outcome: 'sent' | 'gone';
    try {
      outcome = await deps.notifier.send(connectionId, message);
    } catch (error) {
      logger.warn('Could not push a live message', { connectionId, ...describe(message), error: error as Error });
      tally.failed++;
      continue;
    }
    if (outcome === 'gone') {
      tally.gone++;
      await removeGone(connectionId, subscribedTo, deps);
      return;
    }
    tally.sent++;
  }
}

/** Forgets a connection API Gateway answered 410 for; best effort. */
export async function removeGone(
  connectionId: string,
  subscribedTo: readonly string[],
  deps: { readonly connections: ConnectionStore },
): Promise<void> {
  try {
    await deps.connections.remove(connectionId, subscribedTo);
    logger.info('Removed a gone WebSocket connection', { connectionId });
  } catch (error) {
    // Its records expire with the connection's TTL anyway, and the next push to it will try again.
    logger.warn('Could not remove a gone WebSocket connection', { connectionId, error: error as Error });
  }
}
