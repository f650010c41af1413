import { unmarshall } from '@aws-sdk/util-dynamodb';
import type { DynamoDBRecord } from 'aws-lambda';

/**
 * A deployments table stream record's new image as plain values (functions/adapters/dynamo-deployments.ts wrote it
 * with the document client); undefined for a record without one (a REMOVE). Throws on a malformed image: the consumer
 * skips and counts it.
 */
export function readDeploymentImage(record: DynamoDBRecord): Record<string, unknown> | undefined {
  const image = record.dynamodb?.NewImage;
  return image ? unmarshall(image as never) : undefined;
}
