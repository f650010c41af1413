import { createPrivateKey, X509Certificate } from 'node:crypto';
import { chmod, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { BundleFile } from './boot-bundle.js';

/**
 * The boot bundle's drivers (`npm run factory -- bundle`): where the claim credentials and the root CA come from, and
 * the writer. The builders are in boot-bundle.ts.
 */

export class BundleInputError extends Error {
  override readonly name = 'BundleInputError';
}

export interface ClaimCredentials {
  readonly certificatePem: string;
  readonly privateKeyPem: string;
}

/** Where the system keeps Mozilla's roots (Debian's ca-certificates), Amazon Root CA 1 among them. */
export const SYSTEM_AMAZON_ROOT_CA_1 = '/etc/ssl/certs/Amazon_Root_CA_1.pem';

/**
 * AWS's claim certificate and key, made once per batch with AWS credentials (`aws iot create-keys-and-certificate
 * --set-as-active`, the claim policy attached): read from the files given, checked to be a pair.
 */
export async function claimFromFiles(certificateFile: string, keyFile: string): Promise<ClaimCredentials> {
  const credentials = { certificatePem: await readInput(certificateFile, '--claim-cert'), privateKeyPem: await readInput(keyFile, '--claim-key') };
  checkPair(credentials, certificateFile, keyFile);
  return credentials;
}

/** Amazon Root CA 1, from the file given or the system's store; anything else would fail every TLS handshake. */
export async function amazonRootCa1(file: string | undefined): Promise<string> {
  const path = file ?? SYSTEM_AMAZON_ROOT_CA_1;
  const pem = await readFile(path, 'utf8').catch((error: NodeJS.ErrnoException) => {
    throw new BundleInputError(
      file === undefined
        ? `Amazon Root CA 1 is not in the system store (${SYSTEM_AMAZON_ROOT_CA_1}: ${error.code ?? error.message}): ` +
            'install ca-certificates, or pass --root-ca <AmazonRootCA1.pem> (https://www.amazontrust.com/repository/AmazonRootCA1.pem).'
        : `Cannot read --root-ca ${path}: ${error.code ?? error.message}.`,
    );
  });
  let subject: string;
  try {
    subject = new X509Certificate(pem).subject;
  } catch (error) {
    throw new BundleInputError(`${path} is not a PEM certificate (${(error as Error).message}).`);
  }
  if (!/^CN=Amazon Root CA 1$/m.test(subject)) {
    throw new BundleInputError(`${path} is not Amazon Root CA 1 (its subject is ${subject.replace(/\n/g, ', ')}): IoT Core's certificate chains to Amazon Root CA 1.`);
  }
  return pem;
}

/**
 * Writes the bundle into `dir` (created 0700: it holds the claim key), each file with its mode. A folder holding
 * anything else (another bundle's CA, a robot's key) is refused: what is in the folder is the bundle.
 */
export async function writeBundle(dir: string, files: readonly BundleFile[]): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const names = new Set(files.map((file) => file.name));
  const foreign = (await readdir(dir)).filter((name) => !names.has(name)).sort();
  if (foreign.length > 0) {
    throw new BundleInputError(`${dir} holds files that are not part of this bundle (${foreign.join(', ')}): write it to an empty folder.`);
  }
  for (const file of files) {
    const path = join(dir, file.name);
    await writeFile(path, file.content, { mode: file.mode });
    await chmod(path, file.mode); // writeFile's mode applies only to a new file.
  }
}

function checkPair(credentials: ClaimCredentials, certificateFile: string, keyFile: string): void {
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(credentials.certificatePem);
  } catch (error) {
    throw new BundleInputError(`${certificateFile} is not a PEM certificate (${(error as Error).message}).`);
  }
  let matches: boolean;
  try {
    matches = certificate.checkPrivateKey(createPrivateKey(credentials.privateKeyPem));
  } catch (error) {
    throw new BundleInputError(`${keyFile} is not an unencrypted PEM private key (${(error as Error).message}).`);
  }
  if (!matches) throw new BundleInputError(`${keyFile} is not the key of ${certificateFile}: give the claim certificate's own key.`);
  if (new Date(certificate.validTo).getTime() < Date.now()) {
    throw new BundleInputError(`The claim certificate ${certificateFile} expired on ${certificate.validTo}.`);
  }
}

async function readInput(file: string, flag: string): Promise<string> {
  return readFile(file, 'utf8').catch((error: NodeJS.ErrnoException) => {
    throw new BundleInputError(`Cannot read ${flag} ${file}: ${error.code ?? error.message}.`);
  });
}
