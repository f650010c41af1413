import { createPrivateKey, createPublicKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
// @peculiar/x509 needs the Reflect metadata polyfill before it loads.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { webcrypto } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { derCsrBuilder, ProvisioningStateError, ProvisioningStore } from '../../../agent/adapters/provisioning-store.js';
import { type ProvisioningRecord, UNPROVISIONED } from '../../../agent/core/provisioning.js';
import { CertificateAuthority } from '../../../local/certificate-authority.js';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

let dir: string;
let store: ProvisioningStore;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'provisioning-store-'));
  store = new ProvisioningStore(join(dir, 'provisioning'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const mode = async (path: string) => (await stat(path)).mode & 0o777;

describe('provisioning store: the key and its CSR', () => {
  it('writes the key 0600 in a 0700 folder and returns only the CSR', async () => {
    const csrPem = await store.generateKey('lekiwi-10000000abcdef01');
    expect(await mode(store.files.keyFile)).toBe(0o600);
    expect(await mode(store.files.directory)).toBe(0o700);
    expect(csrPem).toMatch(/^-----BEGIN CERTIFICATE REQUEST-----\n/);
    expect(csrPem).not.toMatch(/PRIVATE KEY/);
    expect(await readFile(store.files.keyFile, 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect(await readdir(store.files.directory)).toEqual(['private.key']);
  });

  it('makes a PKCS#10 CSR that verifies, names the thing and carries the public key of the key on disk', async () => {
    const csrPem = await store.generateKey('lekiwi-10000000abcdef01');
    const csr = new x509.Pkcs10CertificateRequest(csrPem);
    expect(await csr.verify()).toBe(true);
    expect(csr.subject).toBe('CN=lekiwi-10000000abcdef01');
    const fromCsr = createPublicKey({ key: Buffer.from(csr.publicKey.rawData), format: 'der', type: 'spki' });
    const fromDisk = createPublicKey(createPrivateKey(await readFile(store.files.keyFile, 'utf8')));
    expect(fromCsr.export({ type: 'spki', format: 'pem' })).toBe(fromDisk.export({ type: 'spki', format: 'pem' }));
  });

  it('the local CA signs the CSR, and the certificate is the pair of the key on disk', async () => {
    const ca = await CertificateAuthority.create();
    const { certificatePem } = await ca.signCertificateRequest(await store.generateKey('lekiwi-LK0001'));
    const certificate = new X509Certificate(certificatePem);
    expect(certificate.checkPrivateKey(createPrivateKey(await readFile(store.files.keyFile, 'utf8')))).toBe(true);
    expect(await store.csrOfStoredKey('lekiwi-LK0001')).toMatch(/BEGIN CERTIFICATE REQUEST/);
  });

  it('refuses to replace the key of a robot that has gone past unprovisioned', async () => {
    const csrPem = await store.generateKey('lekiwi-x');
    const key = await readFile(store.files.keyFile, 'utf8');
    await store.save({ step: 'key-generated', csrPem });
    await expect(store.generateKey('lekiwi-x')).rejects.toThrow(/refusing to replace the key .*key-generated/);
    expect(await readFile(store.files.keyFile, 'utf8')).toBe(key);
  });

  it('the DER builder refuses a key it cannot sign with, naming it', () => {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    expect(() => derCsrBuilder.build({ privateKey, publicKey }, 'x')).toThrow(/EC key/);
  });
});

describe('provisioning store: the state', () => {
  const CSR_PEM = derCsrBuilder.build(generateKeyPairSync('ec', { namedCurve: 'P-256' }), 'lekiwi-x');
  const CERT = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
  const records: ProvisioningRecord[] = [
    UNPROVISIONED,
    { step: 'key-generated', csrPem: CSR_PEM },
    { step: 'certificate-issued', csrPem: CSR_PEM, certificateId: 'abc', certificatePem: CERT, ownershipToken: 'tok', tokenIssuedAt: 1_700_000_000_000 },
    { step: 'registered', csrPem: CSR_PEM, certificateId: 'abc', certificatePem: CERT, thingName: 'lekiwi-x' },
    { step: 'provisioned', certificateId: 'abc', certificatePem: CERT, thingName: 'lekiwi-x', provisionedAt: 1_700_000_000_000 },
  ];

  it('reads UNPROVISIONED from an empty state folder', async () => {
    expect(await store.load()).toEqual(UNPROVISIONED);
  });

  it.each(records.map((record) => [record.step, record] as const))('saves and reads back %s', async (_step, record) => {
    await store.generateKey('lekiwi-x');
    await store.save(record);
    expect(await store.load()).toEqual(record);
    expect(await mode(store.files.stateFile)).toBe(0o600);
    if ('certificatePem' in record) expect(await readFile(store.files.certificateFile, 'utf8')).toBe(record.certificatePem);
  });

  it('ignores (and removes) a half-written temporary file left by a power cut', async () => {
    await store.generateKey('lekiwi-x');
    await store.save(records[1]!);
    await writeFile(`${store.files.stateFile}.tmp`, '{"step":"certificate-iss');
    await writeFile(`${store.files.keyFile}.tmp`, '-----BEGIN PRIV');
    expect(await store.load()).toEqual(records[1]);
    expect((await readdir(store.files.directory)).sort()).toEqual(['private.key', 'state.json']);
    // and the next save is not blocked by a leftover either
    await writeFile(`${store.files.stateFile}.tmp`, 'junk');
    await store.save(records[3]!);
    expect(await store.load()).toEqual(records[3]);
  });

  it('refuses a state file that is not JSON, naming the file', async () => {
    await store.generateKey('lekiwi-x');
    await writeFile(store.files.stateFile, '{"step": "key-gen');
    await expect(store.load()).rejects.toThrow(ProvisioningStateError);
    await expect(store.load()).rejects.toThrow(/state\.json is not JSON/);
  });

  it('refuses a state file of the wrong shape, naming the field', async () => {
    await store.generateKey('lekiwi-x');
    await writeFile(store.files.stateFile, JSON.stringify({ step: 'certificate-issued', csrPem: CSR_PEM, certificateId: 'abc' }));
    await expect(store.load()).rejects.toThrow(/not a provisioning state \(.*certificatePem/);
    await writeFile(store.files.stateFile, JSON.stringify({ step: 'flying' }));
    await expect(store.load()).rejects.toThrow(ProvisioningStateError);
  });

  it('refuses a state that names a key that is not there', async () => {
    await store.generateKey('lekiwi-x');
    await store.save(records[1]!);
    await rm(store.files.keyFile);
    await expect(store.load()).rejects.toThrow(/key .*private\.key is missing/);
  });

  it('never writes a private key into the state', async () => {
    const key = await readFile(await (async () => (await store.generateKey('lekiwi-x'), store.files.keyFile))(), 'utf8');
    await expect(store.save({ step: 'key-generated', csrPem: `${CSR_PEM}${key}` })).rejects.toThrow();
    expect(await store.load()).toEqual(UNPROVISIONED);
  });
});
