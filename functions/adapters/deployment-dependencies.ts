import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { IoTClient } from '@aws-sdk/client-iot';
import { S3Client } from '@aws-sdk/client-s3';
import { z } from 'zod';
import type { EventLog } from '../app/ports.js';
import type { OrchestratorDependencies } from '../app/deployments/orchestrator.js';
import { queueRobotUpdate } from '../app/deployments/queue-update.js';
import { logger, tracer } from '../platform/observability.js';
import { DynamoDeploymentStore } from './dynamo-deployments.js';
import { IotJobsControl } from './iot-jobs-control.js';
import { S3ArtifactStore } from './s3-artifact-store.js';

/**
 * What the deployment use cases need in AWS (the http-api and deployment-orchestrator Lambdas): the deployments table,
 * IoT Jobs' control plane, the release bucket, and RobotUpdateQueued appended to the robots' logs.
 */
export const DeploymentsEnv = z.object({
  DEPLOYMENTS_TABLE: z.string().min(1),
  ARTIFACT_BUCKET: z.string().min(3),
  /** `arn:aws:iot:<region>:<account>:thing/` (functions/adapters/iot-jobs-control.ts). */
  THING_ARN_PREFIX: z.string().min(1),
});
export type DeploymentsEnv = z.infer<typeof DeploymentsEnv>;

export function awsOrchestratorDependencies(env: DeploymentsEnv, eventLog: EventLog): OrchestratorDependencies {
  const now = () => new Date();
  return {
    store: new DynamoDeploymentStore({ client: tracer.captureAWSv3Client(new DynamoDBClient({})), tableName: env.DEPLOYMENTS_TABLE }),
    jobs: new IotJobsControl(tracer.captureAWSv3Client(new IoTClient({})), env.THING_ARN_PREFIX),
    releases: new S3ArtifactStore({ client: tracer.captureAWSv3Client(new S3Client({})), bucket: env.ARTIFACT_BUCKET }),
    queueUpdate: async ({ robotId, data }) => {
      await queueRobotUpdate({ eventLog, now }, robotId, data);
    },
    now,
    log: (level, message, details) => logger[level](message, details ?? {}),
  };
}
