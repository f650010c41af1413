import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { z } from 'zod';
import { type ProvisioningRecord, UNPROVISIONED } from '../core/provisioning.js';
import { replaceFileAtomically, syncDirectory, TEMPORARY_SUFFIX } from './durable-file.js';

/**
 * Where first-boot provisioning (agent/core/provisioning.ts) keeps its steps, in one folder of the agent's stateDir:
 *
 * - `private.key`: the robot's own EC P-256 key (PKCS#8 PEM), mode 0600, made here and never read by anything but the
 *   TLS context: it leaves the robot in no payload (the CSR carries only the public key);
 * - `certificate.pem`: the certificate CreateCertificateFromCsr issued (written before the state that names it);
 * - `state.json`: the ProvisioningRecord, the commit point of every step.
 *
 * INVARIANTS
 * - Every file is replaced all-or-nothing: a sibling temporary file is written, fsynced and renamed over the real
 *   name, then the folder is fsynced. A power cut leaves either the old or the new file, never a torn one; a leftover
 *   temporary file is never read (and is removed at the next load).
 * - The key file is created with mode 0600 (and chmod-ed so, whatever the umask); the folder is 0700.
 * - The key is on disk before `state.json` says `key-generated`, and the certificate before it says
 *   `certificate-issued`: the state never names a file that is not there.
 * - A state file that is not a valid record is refused with ProvisioningStateError naming the file and the problem,
 *   never silently taken as "unprovisioned" (that would make a second key and a second thing).
 */

export class ProvisioningStateError extends Error {
  override readonly name = 'ProvisioningStateError';
}

export interface ProvisioningFiles {
  readonly directory: string;
  readonly stateFile: string;
  readonly keyFile: string;
  readonly certificateFile: string;
}

export function provisioningFiles(directory: string): ProvisioningFiles {
  return {
    directory,
    stateFile: join(directory, 'state.json'),
    keyFile: join(directory, 'private.key'),
    certificateFile: join(directory, 'certificate.pem'),
  };
}


const pem = (label: string) =>
  z.string().refine((text) => text.includes(`-----BEGIN ${label}-----`) && !/PRIVATE KEY-----/.test(text), `must be a PEM ${label}`);
const text = z.string().min(1);
const time = z.number().int().nonnegative();

const StoredRecord = z.discriminatedUnion('step', [
  z.object({ step: z.literal('unprovisioned') }).strict(),
  z.object({ step: z.literal('key-generated'), csrPem: pem('CERTIFICATE REQUEST') }).strict(),
  z
    .object({
      step: z.literal('certificate-issued'),
      csrPem: pem('CERTIFICATE REQUEST'),
      certificateId: text,
      certificatePem: pem('CERTIFICATE'),
      ownershipToken: text,
      tokenIssuedAt: time,
    })
    .strict(),
  z
    .object({
      step: z.literal('registered'),
      csrPem: pem('CERTIFICATE REQUEST'),
      certificateId: text,
      certificatePem: pem('CERTIFICATE'),
      thingName: text,
    })
    .strict(),
  z
    .object({
      step: z.literal('provisioned'),
      certificateId: text,
      certificatePem: pem('CERTIFICATE'),
      thingName: text,
      provisionedAt: time,
    })
    .strict(),
]);

/** Builds a PKCS#10 CSR (PEM) for a key pair. Behind an interface so that the builder can be swapped (see derCsrBuilder). */
export interface CsrBuilder {
  build(keys: { readonly privateKey: KeyObject; readonly publicKey: KeyObject }, commonName: string): string;
}

export class ProvisioningStore {
  readonly files: ProvisioningFiles;

  constructor(
    directory: string,
    private readonly csrBuilder: CsrBuilder = derCsrBuilder,
  ) {
    this.files = provisioningFiles(directory);
  }

  /** The record on disk; UNPROVISIONED when there is none yet. Throws ProvisioningStateError for a corrupt one. */
  async load(): Promise<ProvisioningRecord> {
    await this.removeLeftovers();
    let raw: string;
    try {
      raw = await readFile(this.files.stateFile, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return UNPROVISIONED;
      throw error;
    }
    let json: unknown;
    try {
      json = JSON.parse(raw);
    } catch (error) {
      throw new ProvisioningStateError(`${this.files.stateFile} is not JSON (${(error as Error).message}): move it aside to provision again`);
    }
    const parsed = StoredRecord.safeParse(json);
    if (!parsed.success) {
      const problems = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`).join('; ');
      throw new ProvisioningStateError(`${this.files.stateFile} is not a provisioning state (${problems}): move it aside to provision again`);
    }
    const record = parsed.data as ProvisioningRecord;
    if (record.step !== 'unprovisioned' && !(await exists(this.files.keyFile))) {
      throw new ProvisioningStateError(`${this.files.stateFile} says ${record.step} but the key ${this.files.keyFile} is missing`);
    }
    return record;
  }

  /** Writes `record` (its certificate first, when it has one), each file atomically. */
  async save(record: ProvisioningRecord): Promise<void> {
    const checked = StoredRecord.parse(record);
    await this.makeDirectory();
    if ('certificatePem' in checked) await replaceFileAtomically(this.files.certificateFile, checked.certificatePem, 0o644);
    await replaceFileAtomically(this.files.stateFile, `${JSON.stringify(checked, null, 2)}\n`, 0o600);
  }

  /**
   * Makes the robot's key (EC P-256: AWS IoT accepts it, and it is small and fast on a Pi), writes it 0600, and
   * returns its CSR for `commonName`. Only the CSR comes back: the private key stays in its file.
   */
  async generateKey(commonName: string): Promise<string> {
    // A key is made only while unprovisioned: past that, a certificate (maybe already registered) belongs to the key.
    const current = await this.load();
    if (current.step !== 'unprovisioned') {
      throw new ProvisioningStateError(`refusing to replace the key of a robot whose provisioning is at ${current.step} (${this.files.stateFile})`);
    }
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const csrPem = this.csrBuilder.build({ privateKey, publicKey }, commonName);
    await this.makeDirectory();
    await replaceFileAtomically(this.files.keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, 0o600);
    return csrPem;
  }

  /** The CSR of the key on disk (to make a new request after a restart that lost it; the record normally keeps it). */
  async csrOfStoredKey(commonName: string): Promise<string> {
    const privateKey = createPrivateKey(await readFile(this.files.keyFile, 'utf8'));
    return this.csrBuilder.build({ privateKey, publicKey: createPublicKey(privateKey) }, commonName);
  }

  /** The folder, 0700; when it is new, its parent is fsynced so that the folder itself survives a power cut. */
  private async makeDirectory(): Promise<void> {
    const created = await mkdir(this.files.directory, { recursive: true, mode: 0o700 });
    if (created !== undefined) await syncDirectory(dirname(this.files.directory));
  }

  private async removeLeftovers(): Promise<void> {
    for (const file of [this.files.stateFile, this.files.keyFile, this.files.certificateFile]) {
      await rm(`${file}${TEMPORARY_SUFFIX}`, { force: true });
    }
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// A PKCS#10 CSR with Node's crypto alone (RFC 2986). Node makes keys and signatures but not CSRs; @peculiar/x509 can,
// but the agent imports only Node, zod and the AWS IoT SDK (test/unit/architecture.test.ts). The DER is small:
//
//   CertificationRequest ::= SEQUENCE { certificationRequestInfo, signatureAlgorithm, signature BIT STRING }
//   CertificationRequestInfo ::= SEQUENCE { version INTEGER (0), subject Name, subjectPKInfo, attributes [0] {} }

function der(tag: number, content: Buffer): Buffer {
  const length = content.length;
  let header: Buffer;
  if (length < 0x80) header = Buffer.from([tag, length]);
  else {
    const bytes: number[] = [];
    for (let rest = length; rest > 0; rest >>= 8) bytes.unshift(rest & 0xff);
    header = Buffer.from([tag, 0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([header, content]);
}
const sequence = (...parts: Buffer[]) => der(0x30, Buffer.concat(parts));
const OID_COMMON_NAME = Buffer.from([0x06, 0x03, 0x55, 0x04, 0x03]);
const OID_ECDSA_WITH_SHA256 = Buffer.from([0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]);

/** ECDSA (P-256, SHA-256) CSRs with the subject `CN=<commonName>`, from Node's crypto. */
export const derCsrBuilder: CsrBuilder = {
  build({ privateKey, publicKey }, commonName) {
    if (privateKey.asymmetricKeyType !== 'ec') throw new Error(`derCsrBuilder: needs an EC key, got ${privateKey.asymmetricKeyType}`);
    if (commonName.length === 0 || commonName.length > 64) throw new Error('derCsrBuilder: commonName must be 1–64 characters');
    const subject = sequence(der(0x31, sequence(OID_COMMON_NAME, der(0x0c, Buffer.from(commonName, 'utf8')))));
    const info = sequence(
      Buffer.from([0x02, 0x01, 0x00]),
      subject,
      publicKey.export({ type: 'spki', format: 'der' }),
      der(0xa0, Buffer.alloc(0)),
    );
    const signature = sign('sha256', info, { key: privateKey, dsaEncoding: 'der' });
    const request = sequence(info, sequence(OID_ECDSA_WITH_SHA256), der(0x03, Buffer.concat([Buffer.from([0]), signature])));
    const lines = request.toString('base64').match(/.{1,64}/g) ?? [];
    return `-----BEGIN CERTIFICATE REQUEST-----\n${lines.join('\n')}\n-----END CERTIFICATE REQUEST-----\n`;
  },
};
