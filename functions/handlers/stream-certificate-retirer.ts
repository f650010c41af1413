import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { IoTClient } from '@aws-sdk/client-iot';
import type { DynamoDBBatchResponse, DynamoDBStreamEvent } from 'aws-lambda';
import { DynamoEventLog } from '../adapters/dynamo-event-log.js';
import { IotCertificateRegistry } from '../adapters/iot-certificate-registry.js';
import { retireCertificatesInStreamBatch } from '../adapters/stream-consumers.js';
import { EventLogEnv, loadEnv } from '../platform/env.js';
import { lambdaHandler } from '../platform/lambda.js';
import { tracer } from '../platform/observability.js';

/**
 * The event log stream's re-images and abandoned rotations → IoT's registry (functions/app/retire-certificates.ts): a
 * re-imaged robot's superseded certificate is revoked and detached, a rotation's unused new certificate deactivated
 * and detached. The mapping's filter (schemas/stream-filters.ts RETIREMENT_RECORD_PATTERNS) delivers only those
 * events; partial batch failures on.
 */
const env = loadEnv(EventLogEnv);
const eventLog = new DynamoEventLog({ client: tracer.captureAWSv3Client(new DynamoDBClient({})), tableName: env.EVENT_LOG_TABLE });
const certificates = new IotCertificateRegistry(tracer.captureAWSv3Client(new IoTClient({})));

export const handler = lambdaHandler(
  (event: DynamoDBStreamEvent): Promise<DynamoDBBatchResponse> => retireCertificatesInStreamBatch(event.Records, { certificates, eventLog }),
);
