import { randomBytes } from 'node:crypto';
import type { ProvisioningExchange } from '../../schemas/provisioning.js';
import type { ReservedTopicReplies, ReservedTopicRequest, ReservedTopicService } from './reserved-topics.js';
import { jsonObjectOf } from './json-payload.js';

/**
 * Fleet provisioning's CreateCertificateFromCsr, as the local IoT Core answers it
 * (https://docs.aws.amazon.com/iot/latest/developerguide/fleet-provision-api.html): the robot publishes
 * `{"certificateSigningRequest": "<PEM>"}` on `$aws/certificates/create-from-csr/json`; the local CA signs it and
 * the broker answers `{certificateId, certificatePem, certificateOwnershipToken}` on `…/accepted`, or
 * `{statusCode, errorCode, errorMessage}` on `…/rejected`.
 *
 * INVARIANTS
 * - the private key stays on the robot: only a CSR is signed, its subject and public key kept;
 * - the new certificate is attached to nothing: it cannot connect until RegisterThing attaches it to a thing;
 * - its ownership token names that certificate alone, is random (not derived from anything the robot sent), and is
 *   redeemable for one hour (IoT Core's limit), once;
 * - a payload that is not `{"certificateSigningRequest": string}`, or a CSR the CA refuses, is answered 400
 *   `InvalidPayload` naming the problem (IoT Core does not document its error codes; this is the one observed for
 *   malformed requests); any other failure is a 500 (reserved-topics.ts).
 */

/** IoT Core's certificateOwnershipToken lives for one hour. */
export const OWNERSHIP_TOKEN_TTL_MS = 60 * 60 * 1000;

/** What signs a CSR: the local CA (local/certificate-authority.ts `signCertificateRequest`). */
export interface CertificateSigner {
  signCertificateRequest(csrPem: string): Promise<{ readonly certificateId: string; readonly certificatePem: string }>;
}

/** A CSR the signer refuses; its message says why (local/certificate-authority.ts throws InvalidCsrError). */
export type IsInvalidCsr = (error: unknown) => boolean;

/** What an ownership token stands for: the certificate CreateCertificateFromCsr made (RegisterThing's hook gets both). */
export interface OwnedCertificate {
  readonly certificateId: string;
  readonly certificatePem: string;
}

/** The certificates CreateCertificateFromCsr made, by ownership token, for RegisterThing to redeem. */
export class CertificateOwnershipTokens {
  private readonly tokens = new Map<string, OwnedCertificate & { readonly expiresAt: number }>();

  constructor(private readonly now: () => number = Date.now) {}

  issue(certificateId: string, certificatePem = ''): string {
    this.forgetExpired();
    const token = randomBytes(32).toString('base64url');
    this.tokens.set(token, { certificateId, certificatePem, expiresAt: this.now() + OWNERSHIP_TOKEN_TTL_MS });
    return token;
  }

  /** The certificate a token was issued for, once, within its hour; undefined for an unknown, used or expired token. */
  redeem(token: string): string | undefined {
    return this.redeemCertificate(token)?.certificateId;
  }

  /** `redeem`, with the certificate's PEM. */
  redeemCertificate(token: string): OwnedCertificate | undefined {
    const entry = this.tokens.get(token);
    this.tokens.delete(token);
    return entry && entry.expiresAt > this.now() ? { certificateId: entry.certificateId, certificatePem: entry.certificatePem } : undefined;
  }

  private forgetExpired(): void {
    const now = this.now();
    for (const [token, entry] of this.tokens) if (entry.expiresAt <= now) this.tokens.delete(token);
  }
}

export function createCertificateFromCsrService(options: {
  readonly exchange: ProvisioningExchange;
  readonly signer: CertificateSigner;
  readonly isInvalidCsr: IsInvalidCsr;
  readonly tokens: CertificateOwnershipTokens;
}): ReservedTopicService {
  const { signer, isInvalidCsr, tokens } = options;
  return {
    name: 'CreateCertificateFromCsr',
    exchange: options.exchange,
    async handle(request: ReservedTopicRequest, reply: ReservedTopicReplies): Promise<void> {
      const csr = certificateSigningRequestOf(request.payload);
      if (!csr.ok) return reply.rejected({ statusCode: 400, errorCode: 'InvalidPayload', errorMessage: csr.problem });
      let signed: { readonly certificateId: string; readonly certificatePem: string };
      try {
        signed = await signer.signCertificateRequest(csr.pem);
      } catch (error) {
        if (!isInvalidCsr(error)) throw error;
        return reply.rejected({ statusCode: 400, errorCode: 'InvalidPayload', errorMessage: `certificateSigningRequest: ${(error as Error).message}` });
      }
      await reply.accepted({
        certificateId: signed.certificateId,
        certificatePem: signed.certificatePem,
        certificateOwnershipToken: tokens.issue(signed.certificateId, signed.certificatePem),
      });
    },
  };
}

function certificateSigningRequestOf(payload: Buffer): { ok: true; pem: string } | { readonly ok: false; readonly problem: string } {
  const json = jsonObjectOf(payload);
  if (!json.ok) return json;
  const pem = json.body.certificateSigningRequest;
  if (typeof pem !== 'string' || pem.trim() === '') return { ok: false, problem: 'certificateSigningRequest is missing or not a string' };
  return { ok: true, pem };
}
