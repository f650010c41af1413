import { Logger } from '@aws-lambda-powertools/logger';
import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { Tracer } from '@aws-lambda-powertools/tracer';

/**
 * One logger, one metrics and one tracer per process (Powertools' advice). Service name and namespace come from
 * POWERTOOLS_SERVICE_NAME and POWERTOOLS_METRICS_NAMESPACE, which infra sets per function.
 */
export const logger = new Logger({ serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? 'heartbeat' });
export const metrics = new Metrics({
  namespace: process.env.POWERTOOLS_METRICS_NAMESPACE ?? 'LekiwiHeartbeat',
  serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? 'heartbeat',
  // Its only routine warning is "no application metrics to publish", after every invocation that counted nothing
  // (most of them): errors only, or it would fill the logs (and the local cloud's terminal) at WARN.
  logger: logger.createChild({ logLevel: 'ERROR' }),
});
export const tracer = new Tracer({ serviceName: process.env.POWERTOOLS_SERVICE_NAME ?? 'heartbeat' });

export { MetricUnit };

/** The metric every rejected input increments, with the kind of input as a dimension-free name suffix. */
export function countInvalid(kind: 'Lifecycle' | 'Telemetry' | 'RobotEvent' | 'ChannelRecord' | 'StreamRecord' | 'HttpRequest' | 'WebSocketMessage'): void {
  metrics.addMetric(`Invalid${kind}`, MetricUnit.Count, 1);
}
