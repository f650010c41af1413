import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { BatchId } from '../schemas/provisioning.js';
import { CertificateAuthority, certificateIdOf } from './certificate-authority.js';

/**
 * The local cloud's claim certificates (fleet provisioning by claim, issue 11): one per batch, issued by the local CA
 * on first use (`npm run factory -- bundle`) and kept in `<stateDir>/claims/<batch>/` (`claim.pem.crt`, and
 * `claim.private.key` mode 0600), so every boot bundle of a batch carries the same claim.
 * INVARIANTS: one claim per batch and state dir, never replaced while its files are there; the local IoT Core admits
 * as claim certificates exactly those listed by `localClaimCertificateIds`.
 */

export class LocalClaimError extends Error {
  override readonly name = 'LocalClaimError';
}

export interface LocalClaim {
  readonly certificatePem: string;
  readonly privateKeyPem: string;
  readonly certificateId: string;
  /** The local CA's certificate: what the broker's certificate chains to. */
  readonly caPem: string;
  /** True when this call issued it. */
  readonly issued: boolean;
}

export function claimsDir(stateDir: string): string {
  return join(stateDir, 'claims');
}

/** The batch's claim, issued (with the CA in `<stateDir>/ca`, created if need be) when there is none yet. */
export async function openOrIssueLocalClaim(stateDir: string, batchId: string): Promise<LocalClaim> {
  BatchId.parse(batchId);
  const ca = await CertificateAuthority.openOrCreate(join(stateDir, 'ca'));
  const dir = join(claimsDir(stateDir), batchId);
  const certificateFile = join(dir, 'claim.pem.crt');
  const keyFile = join(dir, 'claim.private.key');
  const [certificatePem, privateKeyPem] = await Promise.all([optional(certificateFile), optional(keyFile)]);
  if (certificatePem !== undefined && privateKeyPem !== undefined) {
    let matches = false;
    try {
      matches = new X509Certificate(certificatePem).checkPrivateKey(createPrivateKey(privateKeyPem));
    } catch {
      // reported below
    }
    if (!matches) throw new LocalClaimError(`The local claim of batch ${batchId} in ${dir} is not a certificate and its key: restore it, or delete the folder to issue a new one.`);
    return { certificatePem, privateKeyPem, certificateId: certificateIdOf(certificatePem), caPem: ca.certificatePem, issued: false };
  }
  if (certificatePem !== undefined || privateKeyPem !== undefined) {
    throw new LocalClaimError(
      `The local claim of batch ${batchId} in ${dir} is incomplete (${certificatePem === undefined ? 'claim.pem.crt' : 'claim.private.key'} is missing): ` +
        'restore it, or delete the folder to issue a new one (bundles made before then stop working).',
    );
  }
  const issued = await ca.issueClientCertificate(`heartbeat-claim-${batchId}`);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await writeFile(keyFile, issued.privateKeyPem, { mode: 0o600 });
  await writeFile(certificateFile, issued.certificatePem, { mode: 0o644 });
  return { ...issued, caPem: ca.certificatePem, issued: true };
}

/** The certificate id of every batch's claim in the state dir (for the local IoT Core's claim admission). */
export async function localClaimCertificateIds(stateDir: string): Promise<Map<string, string>> {
  const batches = await readdir(claimsDir(stateDir)).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return [] as string[];
    throw error;
  });
  const ids = new Map<string, string>();
  for (const batchId of batches.sort()) {
    const pem = await optional(join(claimsDir(stateDir), batchId, 'claim.pem.crt'));
    if (pem !== undefined) ids.set(certificateIdOf(pem), batchId);
  }
  return ids;
}

async function optional(file: string): Promise<string | undefined> {
  return readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
}
