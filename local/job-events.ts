import { handleJobExecutionEvent, type JobEventOutcome } from '../functions/app/deployments/job-events.js';
import type { EventLog } from '../functions/app/ports.js';
import { JOB_EVENTS_RULE } from '../schemas/deployments.js';
import type { BrokerLog, RuleAction } from './iot-broker/contract.js';

/**
 * The local IoT Core's rule target for IoT Jobs' job execution events (issue 12): the rule `heartbeat_job_events`
 * runs the very use case the `JobEvents` Lambda runs in AWS (functions/app/deployments/job-events.ts) on what the
 * local IoT Jobs publishes on `$aws/events/jobExecution/<jobId>/<operation>` through the broker.
 *
 * INVARIANT: like IoT's asynchronous Lambda action, a failure never reaches the publisher: it is logged.
 */
export interface LocalJobEventsOptions {
  readonly eventLog: EventLog;
  readonly log?: BrokerLog;
  /** Told of every event handled (tests, benchmarks). */
  readonly onOutcome?: (outcome: JobEventOutcome) => void;
}

export function localJobEventsRule(options: LocalJobEventsOptions): RuleAction {
  const log = options.log ?? (() => undefined);
  return {
    rule: JOB_EVENTS_RULE,
    put: async ({ data }) => {
      try {
        const outcome = await handleJobExecutionEvent(
          { eventLog: options.eventLog, now: () => new Date(), log: (level, message, details) => log({ level, message, ...details }) },
          data,
        );
        options.onOutcome?.(outcome);
      } catch (error) {
        log({ level: 'error', message: 'job-events failed (the Lambda would be retried)', error: error instanceof Error ? error.message : String(error) });
      }
    },
  };
}
