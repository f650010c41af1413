import { IoTDataPlaneClient } from '@aws-sdk/client-iot-data-plane';
import { S3Client } from '@aws-sdk/client-s3';
import { z } from 'zod';
import { IotDataPublisher } from '../adapters/iot-data-publisher.js';
import { S3ArtifactStore } from '../adapters/s3-artifact-store.js';
import { DEFAULT_URL_TTL_SECONDS } from '../app/deployments/artifact-store.js';
import { handleArtifactUrlRequest } from '../app/deployments/artifact-urls.js';
import { IotDataEnv, loadEnv } from '../platform/env.js';
import { lambdaHandler } from '../platform/lambda.js';
import { logger, metrics, MetricUnit, tracer } from '../platform/observability.js';

/**
 * ArtifactUrls: the IoT rule `heartbeat_artifact_urls_<stage>` invokes it (asynchronously) with each robot's request
 * for download URLs (schemas/deployments.ts ArtifactUrlRequest). It answers on `cmd/heartbeat/<thing>/artifact-urls`
 * through IoT's data plane with presigned GetObject URLs of the artifact bucket (s3:GetObject on `objects/*`, signed
 * with this function's role: a URL works only while the role's session does, which outlasts the 15 minutes).
 */
const ArtifactUrlsEnv = z.object({
  ARTIFACT_BUCKET: z.string().min(3),
  /** How long the URLs work (seconds); 15 minutes by default. At most 12 h: a role session's longest life. */
  ARTIFACT_URL_TTL_SECONDS: z.coerce.number().int().min(60).max(43_200).default(DEFAULT_URL_TTL_SECONDS),
});
const env = loadEnv(z.intersection(ArtifactUrlsEnv, IotDataEnv));
const store = new S3ArtifactStore({ client: tracer.captureAWSv3Client(new S3Client({})), bucket: env.ARTIFACT_BUCKET });
const replies = new IotDataPublisher(
  tracer.captureAWSv3Client(new IoTDataPlaneClient(env.IOT_DATA_ENDPOINT ? { endpoint: env.IOT_DATA_ENDPOINT } : {})),
);

export const handler = lambdaHandler(async (event: unknown) => {
  const outcome = await handleArtifactUrlRequest(
    { store, replies, now: () => new Date(), ttlSeconds: env.ARTIFACT_URL_TTL_SECONDS, log: (level, message, details) => logger[level](message, details) },
    event,
  );
  metrics.addMetric(`ArtifactUrls${outcome.kind[0]!.toUpperCase()}${outcome.kind.slice(1)}`, MetricUnit.Count, 1);
  if (outcome.kind === 'answered') metrics.addMetric('ArtifactUrlsMissingObjects', MetricUnit.Count, outcome.missing);
  return outcome;
});
