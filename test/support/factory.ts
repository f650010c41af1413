import { randomUUID } from 'node:crypto';
import { DeleteTableCommand } from '@aws-sdk/client-dynamodb';
import { createFactoryTable } from '../../local/tables.js';
import { dynamoClient } from './dynamo.js';

/** A fresh factory table in the shared DynamoDB Local; `drop()` deletes it. */
export async function createTestFactoryTable(client = dynamoClient()) {
  const tableName = `factory-${randomUUID()}`;
  await createFactoryTable(client, tableName);
  return { client, tableName, drop: () => client.send(new DeleteTableCommand({ TableName: tableName })) };
}

/** The input AWS IoT sends the pre-provisioning hook (developer guide, "Pre-provision hook input"). */
export function hookInput(parameters: Record<string, string>, certificateId = randomUUID().replaceAll('-', '')) {
  return {
    claimCertificateId: 'claim-cert-batch-a',
    certificateId,
    certificatePem: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n',
    templateArn: 'arn:aws:iot:eu-west-1:123456789012:provisioningtemplate/HeartbeatFleet',
    clientId: '221a6d10-9c7f-42f1-9153-e52e6fc869c1',
    parameters,
  };
}
