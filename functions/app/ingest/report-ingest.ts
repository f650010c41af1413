import { countInvalid, logger, metrics, MetricUnit } from '../../platform/observability.js';
import type { ChannelMessage } from './channel-message.js';
import type { ChannelBatchResult } from './ingest-channel.js';

const INVALID_METRIC = { presence: 'Lifecycle', telemetry: 'Telemetry', events: 'RobotEvent' } as const;

/** A rejected payload is the sender's, not ours: log lines stay short however large or odd it was. */
const MAX_LOGGED_PROBLEMS = 20;
const MAX_FIELD_LENGTH = 128;

/** One log line and one metric for a message that will not reach the log (refused, or not a robot's). */
export function reportMessage(message: ChannelMessage, sequenceNumber: string): void {
  if (message.kind === 'invalid') {
    const problems = message.problems
      .slice(0, MAX_LOGGED_PROBLEMS)
      .map((problem) => ({ field: problem.field.slice(0, MAX_FIELD_LENGTH), message: problem.message }));
    logger.warn(`Rejected an invalid ${message.ingestKind ?? 'channel'} message`, {
      robotId: message.robotId,
      sequenceNumber,
      fields: [...new Set(problems.map((problem) => problem.field))],
      problems,
    });
    countInvalid(message.ingestKind ? INVALID_METRIC[message.ingestKind] : 'ChannelRecord');
  } else if (message.kind === 'ignored') {
    logger.info('Ignored the lifecycle event of a client that is not a robot', { clientId: message.clientId });
    metrics.addMetric('IgnoredClient', MetricUnit.Count, 1);
  }
}

/** What a batch did: events appended, transactions, robots whose messages wait for the retry. */
export function reportBatch(result: ChannelBatchResult, records: number): void {
  const appended = result.robots.reduce((sum, robot) => sum + robot.appended, 0);
  const writes = result.robots.reduce((sum, robot) => sum + robot.writes, 0);
  metrics.addMetric('ChannelRecords', MetricUnit.Count, records);
  metrics.addMetric('Appended', MetricUnit.Count, appended);
  metrics.addMetric('LogWrites', MetricUnit.Count, writes);
  // Robots' own messages (and single events) refused for good; per robot in the read model (rejectedMessages).
  const rejected = result.robots.reduce((sum, robot) => sum + robot.rejected, 0);
  metrics.addMetric('RejectedDeviceMessages', MetricUnit.Count, rejected);
  logger.debug('Ingest batch handled', { records, robots: result.robots.length, appended, writes });
  for (const robot of result.robots) {
    if (!robot.failure) continue;
    logger.error('Robot messages not written; the batch is retried from the first of them', {
      robotId: robot.robotId,
      sequenceNumber: robot.failure.sequenceNumber,
      error: robot.failure.error as Error,
    });
    metrics.addMetric('RobotBatchFailed', MetricUnit.Count, 1);
  }
}

export function reportAckFailed(robotId: string, error: unknown): void {
  logger.warn('Acknowledgement not published; the robot sends its events again after its timeout', { robotId, error: error as Error });
  metrics.addMetric('AckFailed', MetricUnit.Count, 1);
}
