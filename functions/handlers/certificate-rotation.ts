import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { IoTClient } from '@aws-sdk/client-iot';
import { IoTDataPlaneClient } from '@aws-sdk/client-iot-data-plane';
import { z } from 'zod';
import { DynamoEventLog } from '../adapters/dynamo-event-log.js';
import { IotCertificateRegistry } from '../adapters/iot-certificate-registry.js';
import { IotDataPublisher } from '../adapters/iot-data-publisher.js';
import { handleRotationMessage } from '../app/certificate-rotation.js';
import { EventLogEnv, IotDataEnv, loadEnv } from '../platform/env.js';
import { lambdaHandler } from '../platform/lambda.js';
import { logger, metrics, MetricUnit, tracer } from '../platform/observability.js';

/**
 * CertificateRotation: the IoT rule `heartbeat_certificate_rotation_<stage>` invokes it (asynchronously) with each
 * rotation request or confirm a robot publishes (schemas/rotation.ts). It signs the robot's CSR into a new active
 * certificate attached to its thing, and, once the robot confirms it is connected with it, deactivates and detaches
 * the old one and appends CertificateRotated. Replies go to the robot through IoT's data plane.
 */
const env = loadEnv(z.intersection(EventLogEnv, IotDataEnv));
const eventLog = new DynamoEventLog({ client: tracer.captureAWSv3Client(new DynamoDBClient({})), tableName: env.EVENT_LOG_TABLE });
const replies = new IotDataPublisher(
  tracer.captureAWSv3Client(new IoTDataPlaneClient(env.IOT_DATA_ENDPOINT ? { endpoint: env.IOT_DATA_ENDPOINT } : {})),
);
const certificates = new IotCertificateRegistry(tracer.captureAWSv3Client(new IoTClient({})));

export const handler = lambdaHandler(async (event: unknown) => {
  const outcome = await handleRotationMessage(
    { certificates, replies, eventLog, now: () => new Date(), log: (level, message, details) => logger[level](message, details) },
    event,
  );
  metrics.addMetric(`CertificateRotation${outcome.kind[0]!.toUpperCase()}${outcome.kind.slice(1)}`, MetricUnit.Count, 1);
  return outcome;
});
