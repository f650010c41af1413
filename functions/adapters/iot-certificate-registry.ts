import {
  AttachThingPrincipalCommand,
  CreateCertificateFromCsrCommand,
  DescribeCertificateCommand,
  DetachThingPrincipalCommand,
  IoTServiceException,
  ListPrincipalThingsCommand,
  UpdateCertificateCommand,
  type CertificateDescription,
  type IoTClient,
} from '@aws-sdk/client-iot';
import { InvalidCsrError, type CertificateRegistry } from '../app/certificate-rotation.js';

/**
 * AWS IoT's certificate registry for certificate rotation (functions/app/certificate-rotation.ts), on the SDK's IoT
 * client: CreateCertificateFromCsr (setAsActive), AttachThingPrincipal, DescribeCertificate, ListPrincipalThings,
 * UpdateCertificate (INACTIVE) and DetachThingPrincipal — exactly the actions the CertificateRotation function's role
 * is granted (infra/stacks/iot-stack.ts). The certificate retirer (functions/app/retire-certificates.ts) uses
 * `retire` and `revoke` (UpdateCertificate REVOKED): DescribeCertificate, UpdateCertificate, DetachThingPrincipal.
 *
 * INVARIANTS
 * - A CSR IoT refuses (InvalidRequestException) is an InvalidCsrError: the robot is told INVALID_CSR, not retried.
 * - A certificate `issue` made but could not attach is set INACTIVE before the error is thrown: no active certificate
 *   is left that no thing holds.
 * - A certificate IoT does not know (ResourceNotFoundException) is `not-attached`, has no expiry, and `retire` of it
 *   is a no-op; a detach of a principal already detached is too: retire is safe to repeat. `revoke` likewise, and it
 *   leaves a REVOKED certificate's status alone (IoT refuses to change it) but still detaches it.
 * - Every other IoT error is an IotRegistryError naming the call, IoT's error code and what to check; the original
 *   error is its `cause`.
 */

export class IotRegistryError extends Error {
  override readonly name = 'IotRegistryError';
  constructor(
    readonly operation: string,
    readonly code: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** IoT's error code of an SDK error (`name`), or undefined for anything that is not one of IoT's answers. */
function iotCode(error: unknown): string | undefined {
  return error instanceof IoTServiceException ? error.name : undefined;
}

function hint(code: string): string {
  switch (code) {
    case 'UnauthorizedException':
    case 'AccessDeniedException':
      return 'check that the CertificateRotation role is granted this action (infra/stacks/iot-stack.ts)';
    case 'ThrottlingException':
    case 'ServiceUnavailableException':
    case 'InternalFailureException':
      return 'IoT is busy or failing; the rule retries the Lambda, and the robot asks again after its reply timeout';
    case 'LimitExceededException':
      return 'an IoT quota is reached (certificates, or principals per thing): retire unused certificates';
    default:
      return 'see the IoT error message';
  }
}

/** `work`, with an IoT failure wrapped in an IotRegistryError naming `operation` (other errors pass through). */
async function call<T>(operation: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    const code = iotCode(error);
    if (code === undefined) throw error;
    throw new IotRegistryError(operation, code, `IoT ${operation} failed: ${code}: ${(error as Error).message} (${hint(code)})`, { cause: error });
  }
}

/** The IoT client this adapter needs: any client that sends these commands (the Lambda's is traced). */
export type IotClientLike = Pick<IoTClient, 'send'>;

export class IotCertificateRegistry implements CertificateRegistry {
  constructor(private readonly client: IotClientLike) {}

  async issue(thingName: string, csrPem: string): Promise<{ certificateId: string; certificatePem: string }> {
    let created;
    try {
      created = await this.client.send(new CreateCertificateFromCsrCommand({ certificateSigningRequest: csrPem, setAsActive: true }));
    } catch (error) {
      if (iotCode(error) === 'InvalidRequestException') throw new InvalidCsrError((error as Error).message);
      return call('CreateCertificateFromCsr', () => Promise.reject(error));
    }
    const { certificateArn, certificateId, certificatePem } = created;
    if (!certificateArn || !certificateId || !certificatePem) {
      throw new IotRegistryError('CreateCertificateFromCsr', 'IncompleteResponse', 'IoT CreateCertificateFromCsr answered without certificateArn, certificateId or certificatePem');
    }
    try {
      await call('AttachThingPrincipal', () => this.client.send(new AttachThingPrincipalCommand({ thingName, principal: certificateArn })));
    } catch (error) {
      // Not left active and unheld; if this fails too, the attach error is still the one to act on.
      await this.client.send(new UpdateCertificateCommand({ certificateId, newStatus: 'INACTIVE' })).catch(() => undefined);
      throw error;
    }
    return { certificateId, certificatePem };
  }

  async standing(thingName: string, certificateId: string): Promise<'active' | 'inactive' | 'not-attached'> {
    const described = await this.describe(certificateId);
    if (!described?.certificateArn) return 'not-attached';
    const principal = described.certificateArn;
    let nextToken: string | undefined;
    let attached = false;
    do {
      const page = await call('ListPrincipalThings', () => this.client.send(new ListPrincipalThingsCommand({ principal, maxResults: 250, nextToken })));
      attached = (page.things ?? []).includes(thingName);
      nextToken = page.nextToken;
    } while (!attached && nextToken);
    if (!attached) return 'not-attached';
    return described.status === 'ACTIVE' ? 'active' : 'inactive';
  }

  async retire(thingName: string, certificateId: string): Promise<void> {
    const described = await this.describe(certificateId);
    if (!described?.certificateArn) return;
    const principal = described.certificateArn;
    if (described.status !== 'INACTIVE') {
      await call('UpdateCertificate', () => this.client.send(new UpdateCertificateCommand({ certificateId, newStatus: 'INACTIVE' })));
    }
    await this.detach(thingName, principal);
  }

  /** DetachThingPrincipal; a thing or attachment IoT does not know is already detached. */
  private async detach(thingName: string, principal: string): Promise<void> {
    try {
      await this.client.send(new DetachThingPrincipalCommand({ thingName, principal }));
    } catch (error) {
      if (iotCode(error) === 'ResourceNotFoundException') return;
      await call('DetachThingPrincipal', () => Promise.reject(error));
    }
  }

  /**
   * A re-image's superseded certificate: REVOKED for good (its key was wiped with the old image), and detached from the
   * thing, which keeps everything else. Deactivating first is not needed: IoT refuses a REVOKED certificate at once.
   */
  async revoke(thingName: string, certificateId: string): Promise<void> {
    const described = await this.describe(certificateId);
    if (!described?.certificateArn) return;
    if (described.status !== 'REVOKED') {
      await call('UpdateCertificate', () => this.client.send(new UpdateCertificateCommand({ certificateId, newStatus: 'REVOKED' })));
    }
    await this.detach(thingName, described.certificateArn);
  }

  async notAfter(certificateId: string): Promise<string | null> {
    const notAfter = (await this.describe(certificateId))?.validity?.notAfter;
    return notAfter instanceof Date && !Number.isNaN(notAfter.getTime()) ? notAfter.toISOString() : null;
  }

  /** The certificate's description, or undefined when IoT does not know it. */
  private async describe(certificateId: string): Promise<CertificateDescription | undefined> {
    try {
      return (await this.client.send(new DescribeCertificateCommand({ certificateId }))).certificateDescription;
    } catch (error) {
      if (iotCode(error) === 'ResourceNotFoundException') return undefined;
      return call('DescribeCertificate', () => Promise.reject(error));
    }
  }
}
