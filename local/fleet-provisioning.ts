import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoProvisioningClaims } from '../functions/adapters/dynamo-factory-registry.js';
import { preProvisioningHook } from '../functions/app/provisioning/pre-provisioning-hook.js';
import { claimPolicy, provisioningTemplateName, provisioningTopics } from '../schemas/provisioning.js';
import { InvalidCsrError, type CertificateAuthority } from './certificate-authority.js';
import { localClaimCertificateIds } from './claim-certificates.js';
import { LOCAL_AWS } from './dynamodb-local.js';
import type { BrokerLog, ClaimAdmission } from './iot-broker/contract.js';
import { CertificateOwnershipTokens, createCertificateFromCsrService } from './iot-broker/create-certificate-from-csr.js';
import { registerThingService, type ProvisioningHook } from './iot-broker/register-thing.js';
import type { ReservedTopicService } from './iot-broker/reserved-topics.js';
import type { ThingRegistry } from './thing-registry.js';

/**
 * The local IoT Core's fleet provisioning by claim (issue 11), composed for the broker: who may connect with a claim
 * certificate (the batches' claims under `<stateDir>/claims/`, local/claim-certificates.ts) and under which policy
 * (schemas/provisioning.ts `claimPolicy`), and the two reserved-topic services of the template `heartbeat-claim`:
 * CreateCertificateFromCsr signed by the local CA, RegisterThing with the pre-provisioning hook's very use case on the
 * factory table and event log in DynamoDB Local (what the Lambda runs in AWS).
 */
export interface LocalFleetProvisioningOptions {
  readonly stateDir: string;
  readonly ca: CertificateAuthority;
  /** DynamoDB Local's client. */
  readonly dynamo: DynamoDBClient;
  readonly factoryTable: string;
  readonly eventLogTable: string;
  /** The registry the broker authenticates against: RegisterThing writes to the same instance. */
  readonly registry: ThingRegistry;
  readonly log?: BrokerLog;
  /** The clock ownership tokens expire by (tests move it past the hour). */
  readonly now?: () => number;
}

export interface LocalFleetProvisioning {
  readonly templateName: string;
  readonly claims: ClaimAdmission;
  readonly reservedTopicServices: readonly ReservedTopicService[];
}

/** The local account id in ARNs (DynamoDB Local and the stand-ins accept any). */
const LOCAL_ACCOUNT = '000000000000';

export function localFleetProvisioning(options: LocalFleetProvisioningOptions): LocalFleetProvisioning {
  const templateName = provisioningTemplateName();
  const topics = provisioningTopics(templateName);
  const tokens = new CertificateOwnershipTokens(options.now);
  const claims = new DynamoProvisioningClaims({ client: options.dynamo, factoryTable: options.factoryTable, eventLogTable: options.eventLogTable });
  const hook: ProvisioningHook = async (request) => {
    const { response, decision } = await preProvisioningHook({ claims, now: () => new Date() }, request);
    return { response, reason: decision.allow ? undefined : decision.reason };
  };
  return {
    templateName,
    claims: {
      policy: claimPolicy(templateName),
      isClaimCertificate: async (certificateId) => (await localClaimCertificateIds(options.stateDir)).has(certificateId),
    },
    reservedTopicServices: [
      createCertificateFromCsrService({
        exchange: topics.createCertificateFromCsr,
        signer: options.ca,
        isInvalidCsr: (error) => error instanceof InvalidCsrError,
        tokens,
      }),
      registerThingService({
        exchange: topics.registerThing,
        templateArn: `arn:aws:iot:${LOCAL_AWS.region}:${LOCAL_ACCOUNT}:provisioningtemplate/${templateName}`,
        tokens,
        hook,
        registry: options.registry,
        ...(options.log ? { log: options.log } : {}),
      }),
    ],
  };
}
