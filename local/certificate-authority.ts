import { createHash, createPrivateKey, randomBytes, webcrypto } from 'node:crypto';
import { mkdir, open, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
// @peculiar/x509 resolves its algorithm providers through tsyringe, which needs the Reflect metadata polyfill.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';

/**
 * The local cloud's certificate authority: what AWS IoT Core's CA and `CreateKeysAndCertificate` are in AWS. It
 * issues one client certificate per robot (CN = thing name) and the broker's server certificate, all ECDSA P-256
 * with SHA-256 (IoT Core accepts EC keys; they are made in milliseconds, so a 1,000-robot boot storm can have real
 * certificates). The CA's key never leaves the state dir (mode 0600).
 */

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const EC_KEY = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING = { name: 'ECDSA', hash: 'SHA-256' } as const;
const DAY_MS = 24 * 60 * 60 * 1000;

export interface IssuedCertificate {
  readonly certificatePem: string;
  /** SEC1 PEM (`EC PRIVATE KEY`), which OpenSSL, s2n (aws-crt) and Node all read. */
  readonly privateKeyPem: string;
  /** SHA-256 of the DER certificate in lower-case hex: the certificate id, as IoT Core names certificates. */
  readonly certificateId: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export interface ClientCertificateOptions {
  readonly notBefore?: Date;
  readonly notAfter?: Date;
}

/** The CA's files were there but could not be read back: say which and what to do. */
export class CorruptCaError extends Error {
  override readonly name = 'CorruptCaError';
}

export class CertificateAuthority {
  private constructor(
    private readonly keys: CryptoKeyPair,
    private readonly certificate: x509.X509Certificate,
  ) {}

  /** A new CA kept in memory only (tests; a "foreign" CA whose certificates the broker must refuse). */
  static async create(options: { commonName?: string; validDays?: number } = {}): Promise<CertificateAuthority> {
    const keys = await generateKeys();
    const now = Date.now();
    const certificate = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serialNumber(),
      name: `CN=${options.commonName ?? 'Lekiwi Heartbeat local CA'}, O=Lekiwi Heartbeat`,
      notBefore: new Date(now - DAY_MS),
      notAfter: new Date(now + (options.validDays ?? 3650) * DAY_MS),
      keys,
      signingAlgorithm: SIGNING,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    return new CertificateAuthority(keys, certificate);
  }

  /** A new CA written to `dir`, unless another process claimed `ca.key` first (then undefined). */
  private static async createFirst(dir: string, keyPath: string, certificatePath: string): Promise<CertificateAuthority | undefined> {
    const ca = await CertificateAuthority.create();
    await mkdir(dir, { recursive: true });
    let key;
    try {
      key = await open(keyPath, 'wx', 0o600);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return undefined;
      throw error;
    }
    try {
      await key.writeFile(await ca.privateKeyPem());
    } finally {
      await key.close();
    }
    const temporary = `${certificatePath}.${process.pid}.tmp`;
    await writeFile(temporary, ca.certificatePem, { mode: 0o644 });
    await rename(temporary, certificatePath);
    return ca;
  }

  /**
   * The CA kept in `dir` (`ca.pem`, `ca.key`), created on first use. A CA that cannot be read back is not replaced
   * silently: every certificate issued so far would stop working.
   */
  static async openOrCreate(dir: string): Promise<CertificateAuthority> {
    const certificatePath = join(dir, 'ca.pem');
    const keyPath = join(dir, 'ca.key');
    let [certificatePem, keyPem] = await Promise.all([readOptional(certificatePath), readOptional(keyPath)]);
    if (certificatePem === undefined) {
      // Two first runs at once (`npm run cert` twice on a fresh state dir): the one that creates `ca.key` (O_EXCL)
      // makes the CA; the other waits for its `ca.pem` (renamed into place whole) instead of writing a second CA.
      if (keyPem === undefined) {
        const created = await CertificateAuthority.createFirst(dir, keyPath, certificatePath);
        if (created) return created;
      }
      [certificatePem, keyPem] = await waitForBoth(certificatePath, keyPath);
    }
    if (certificatePem === undefined || keyPem === undefined) {
      throw new CorruptCaError(
        `The local CA in ${dir} is incomplete (${certificatePem === undefined ? 'ca.pem' : 'ca.key'} is missing). ` +
          'Restore it, or delete the state dir to start over (every robot then needs a new certificate: npm run cert).',
      );
    }
    try {
      const certificate = new x509.X509Certificate(certificatePem);
      const privateKey = await webcrypto.subtle.importKey(
        'pkcs8',
        createPrivateKey(keyPem).export({ type: 'pkcs8', format: 'der' }),
        EC_KEY,
        true,
        ['sign'],
      );
      const publicKey = await certificate.publicKey.export(EC_KEY, ['verify']);
      return new CertificateAuthority({ privateKey, publicKey } as CryptoKeyPair, certificate);
    } catch (error) {
      throw new CorruptCaError(
        `The local CA in ${dir} cannot be read (${(error as Error).message}). ` +
          'Restore ca.pem and ca.key, or delete the state dir to start over.',
      );
    }
  }

  get certificatePem(): string {
    return this.certificate.toString('pem');
  }

  /** A robot's certificate: CN = thing name, client authentication only. */
  async issueClientCertificate(thingName: string, options: ClientCertificateOptions = {}): Promise<IssuedCertificate> {
    const notBefore = options.notBefore ?? new Date(Date.now() - 60_000);
    const notAfter = options.notAfter ?? new Date(notBefore.getTime() + 3650 * DAY_MS);
    return this.issue(`CN=${thingName}`, notBefore, notAfter, [
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
    ]);
  }

  /**
   * A client certificate for a certificate signing request (fleet provisioning's CreateCertificateFromCsr): the
   * CSR's subject and public key, client authentication only; the key never leaves the robot. Throws
   * InvalidCsrError for a CSR that is not PEM PKCS #10 or whose signature does not verify.
   */
  async signCertificateRequest(csrPem: string): Promise<Omit<IssuedCertificate, 'privateKeyPem'>> {
    let csr: x509.Pkcs10CertificateRequest;
    try {
      csr = new x509.Pkcs10CertificateRequest(csrPem);
    } catch (error) {
      throw new InvalidCsrError(`not a PEM PKCS #10 certificate signing request (${error instanceof Error ? error.message : String(error)})`);
    }
    if (!(await csr.verify().catch(() => false))) throw new InvalidCsrError('its signature does not verify with its own public key');
    const notBefore = new Date(Date.now() - 60_000);
    const notAfter = new Date(notBefore.getTime() + 3650 * DAY_MS);
    const certificate = await x509.X509CertificateGenerator.create({
      serialNumber: serialNumber(),
      subject: csr.subject,
      issuer: this.certificate.subject,
      notBefore,
      notAfter,
      publicKey: csr.publicKey,
      signingKey: this.keys.privateKey,
      signingAlgorithm: SIGNING,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        await x509.AuthorityKeyIdentifierExtension.create(this.keys.publicKey),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
      ],
    });
    const certificatePem = certificate.toString('pem');
    return { certificatePem, certificateId: certificateIdOf(certificatePem), notBefore, notAfter };
  }

  /** The broker's certificate, valid for the given host names and IP addresses. */
  async issueServerCertificate(hosts: readonly string[]): Promise<IssuedCertificate> {
    const notBefore = new Date(Date.now() - 60_000);
    const names = hosts.map((host) =>
      /^[\d.]+$/.test(host) || host.includes(':') ? { type: 'ip' as const, value: host } : { type: 'dns' as const, value: host },
    );
    return this.issue(`CN=${hosts[0] ?? 'localhost'}`, notBefore, new Date(notBefore.getTime() + 825 * DAY_MS), [
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(names),
    ]);
  }

  private async issue(subject: string, notBefore: Date, notAfter: Date, extensions: x509.Extension[]): Promise<IssuedCertificate> {
    const keys = await generateKeys();
    const certificate = await x509.X509CertificateGenerator.create({
      serialNumber: serialNumber(),
      subject,
      issuer: this.certificate.subject,
      notBefore,
      notAfter,
      publicKey: keys.publicKey,
      signingKey: this.keys.privateKey,
      signingAlgorithm: SIGNING,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        await x509.AuthorityKeyIdentifierExtension.create(this.keys.publicKey),
        ...extensions,
      ],
    });
    return {
      certificatePem: certificate.toString('pem'),
      privateKeyPem: await sec1Pem(keys.privateKey),
      certificateId: certificateIdOf(certificate.toString('pem')),
      notBefore,
      notAfter,
    };
  }

  private async privateKeyPem(): Promise<string> {
    return sec1Pem(this.keys.privateKey);
  }
}

/** A certificate signing request the CA cannot sign; the message says why. */
export class InvalidCsrError extends Error {
  override readonly name = 'InvalidCsrError';
}

/** IoT Core's certificate id of a PEM certificate: SHA-256 of its DER bytes, lower-case hex. */
export function certificateIdOf(certificatePem: string): string {
  const der = Buffer.from(
    certificatePem.replace(/-----(BEGIN|END) CERTIFICATE-----/g, '').replace(/\s+/g, ''),
    'base64',
  );
  return createHash('sha256').update(der).digest('hex');
}

function generateKeys(): Promise<CryptoKeyPair> {
  return webcrypto.subtle.generateKey(EC_KEY, true, ['sign', 'verify']) as Promise<CryptoKeyPair>;
}

async function sec1Pem(privateKey: CryptoKey): Promise<string> {
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', privateKey));
  return createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }).export({ type: 'sec1', format: 'pem' }).toString();
}

/** A positive 128-bit serial (RFC 5280 asks for at most 20 octets, positive). */
function serialNumber(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] ?? 0) & 0x7f;
  return bytes.toString('hex');
}

/** How long a second first run waits for the CA another process is writing (a write takes milliseconds). */
const CA_CREATION_WAIT_MS = 2_000;

async function waitForBoth(certificatePath: string, keyPath: string): Promise<[string | undefined, string | undefined]> {
  const deadline = Date.now() + CA_CREATION_WAIT_MS;
  for (;;) {
    const both = await Promise.all([readOptional(certificatePath), readOptional(keyPath)]);
    if ((both[0] !== undefined && both[1] !== undefined) || Date.now() > deadline) return both;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}
