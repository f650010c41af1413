import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CertificateAuthority, certificateIdOf, CorruptCaError } from '../../local/certificate-authority.js';
import { CorruptRegistryError, InvalidThingName, provisionThing, ThingRegistry } from '../../local/thing-registry.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});
async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'local-ca-'));
  dirs.push(dir);
  return dir;
}

describe('local certificate authority', () => {
  it('issues robot certificates that chain to it, with the thing name as CN and client auth only', async () => {
    const ca = await CertificateAuthority.create();
    const issued = await ca.issueClientCertificate('lekiwi-LK0001');
    const certificate = new X509Certificate(issued.certificatePem);
    const caCertificate = new X509Certificate(ca.certificatePem);

    expect(certificate.verify(caCertificate.publicKey)).toBe(true);
    expect(certificate.checkIssued(caCertificate)).toBe(true);
    expect(certificate.subject).toBe('CN=lekiwi-LK0001');
    expect(certificate.keyUsage).toEqual(['1.3.6.1.5.5.7.3.2']);
    expect(issued.certificateId).toBe(certificate.fingerprint256.replaceAll(':', '').toLowerCase());
    expect(certificateIdOf(issued.certificatePem)).toBe(issued.certificateId);
    expect(issued.privateKeyPem).toMatch(/^-----BEGIN EC PRIVATE KEY-----/);
    // Another CA's certificate does not chain
    expect(certificate.verify(new X509Certificate((await CertificateAuthority.create()).certificatePem).publicKey)).toBe(false);
  });

  it('keeps its key across opens, and refuses to silently replace a damaged CA', async () => {
    const dir = await tempDir();
    const first = await CertificateAuthority.openOrCreate(dir);
    const again = await CertificateAuthority.openOrCreate(dir);
    expect(again.certificatePem).toBe(first.certificatePem);
    const issued = await again.issueClientCertificate('xle-XL0001');
    expect(new X509Certificate(issued.certificatePem).verify(new X509Certificate(first.certificatePem).publicKey)).toBe(true);
    expect((await stat(join(dir, 'ca.key'))).mode & 0o777).toBe(0o600);

    await writeFile(join(dir, 'ca.key'), 'garbage');
    await expect(CertificateAuthority.openOrCreate(dir)).rejects.toThrow(CorruptCaError);
    await rm(join(dir, 'ca.key'));
    await expect(CertificateAuthority.openOrCreate(dir)).rejects.toThrow(/ca.key is missing/);
  });

  it('issues the broker a server certificate for its host names and addresses', async () => {
    const ca = await CertificateAuthority.create();
    const server = new X509Certificate((await ca.issueServerCertificate(['localhost', '127.0.0.1'])).certificatePem);
    expect(server.checkHost('localhost')).toBe('localhost');
    expect(server.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(server.checkHost('example.com')).toBeUndefined();
  });
});

describe('thing registry and npm run cert', () => {
  it('provisions a robot: credentials on disk, an agent config, the thing registered with its model and certificate', async () => {
    const stateDir = await tempDir();
    const ca = await CertificateAuthority.openOrCreate(join(stateDir, 'ca'));
    const credentials = await provisionThing(stateDir, ca, 'xle-XL0007', { port: 18883 });

    expect(await readFile(credentials.caFile, 'utf8')).toBe(ca.certificatePem);
    expect((await stat(credentials.privateKeyFile)).mode & 0o777).toBe(0o600);
    const config = JSON.parse(await readFile(credentials.agentConfigFile, 'utf8'));
    expect(config).toMatchObject({ endpoint: 'localhost', port: 18883, thingName: 'xle-XL0007', certificateFile: credentials.certificateFile });

    const registry = ThingRegistry.in(stateDir);
    expect(await registry.lookup('xle-XL0007')).toMatchObject({ model: 'xle', certificateIds: [credentials.certificate.certificateId] });
    expect(await registry.isAttached('xle-XL0007', credentials.certificate.certificateId)).toBe(true);
    expect(await registry.isAttached('xle-XL0007', '0'.repeat(64))).toBe(false);
    expect(await registry.isAttached('lekiwi-LK0001', credentials.certificate.certificateId)).toBe(false);

    // A second certificate is attached beside the first; another process's write is seen
    const second = await provisionThing(stateDir, ca, 'xle-XL0007');
    expect((await ThingRegistry.in(stateDir).lookup('xle-XL0007'))?.certificateIds).toEqual([
      credentials.certificate.certificateId,
      second.certificate.certificateId,
    ]);
    expect(await registry.isAttached('xle-XL0007', second.certificate.certificateId)).toBe(true);
  });

  it('refuses a name that is not <model>-<serial>, and a registry file it cannot read', async () => {
    const stateDir = await tempDir();
    const ca = await CertificateAuthority.create();
    await expect(provisionThing(stateDir, ca, 'robot-1')).rejects.toThrow(InvalidThingName);
    await expect(provisionThing(stateDir, ca, 'lekiwi-../../etc')).rejects.toThrow(/lekiwi-LK0001/);
    await writeFile(join(stateDir, 'things.json'), '{"version":1,"things":{"x":{}}}');
    await expect(ThingRegistry.in(stateDir).lookup('x')).rejects.toThrow(CorruptRegistryError);
  });
});
