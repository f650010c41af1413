import { assertNever } from '../../domain/robot-state.js';
import { countInvalid, logger, metrics, MetricUnit } from '../../platform/observability.js';
import type { CommandOutcome } from '../execute-robot-command.js';
import type { IngestResult } from './ingest-result.js';

export type IngestKind = 'Lifecycle' | 'Telemetry' | 'RobotEvent';

const LABEL: Readonly<Record<IngestKind, string>> = {
  Lifecycle: 'lifecycle event',
  Telemetry: 'telemetry sample',
  RobotEvent: 'robot event',
};

const OUTCOME_METRIC: Readonly<Record<CommandOutcome['status'], string>> = {
  appended: 'Appended',
  unchanged: 'Unchanged',
  duplicate: 'Duplicate',
  'stale-sample': 'StaleSample',
};

/** A rejected payload is the sender's, not ours: log lines stay short however large or odd it was. */
const MAX_LOGGED_PROBLEMS = 20;
const MAX_FIELD_LENGTH = 128;

/** One log line and one metric per message, whatever became of it. */
export function reportIngest(kind: IngestKind, result: IngestResult): void {
  switch (result.status) {
    case 'invalid': {
      const problems = result.problems
        .slice(0, MAX_LOGGED_PROBLEMS)
        .map((problem) => ({ field: problem.field.slice(0, MAX_FIELD_LENGTH), message: problem.message }));
      logger.warn(`Rejected an invalid ${LABEL[kind]}`, {
        robotId: result.robotId,
        fields: [...new Set(problems.map((problem) => problem.field))],
        problems,
      });
      countInvalid(kind);
      return;
    }
    case 'ignored':
      logger.info('Ignored the lifecycle event of a client that is not a robot', { clientId: result.clientId });
      metrics.addMetric('IgnoredClient', MetricUnit.Count, 1);
      return;
    case 'recorded': {
      const { outcome } = result;
      logger.debug(`${LABEL[kind]} ${outcome.status}`, {
        robotId: result.robotId,
        outcome: outcome.status,
        ...(outcome.status === 'appended'
          ? { events: outcome.recorded.map((recorded) => ({ seq: recorded.seq, type: recorded.event.type })) }
          : {}),
      });
      metrics.addMetric(OUTCOME_METRIC[outcome.status], MetricUnit.Count, 1);
      return;
    }
    default:
      assertNever(result);
  }
}
