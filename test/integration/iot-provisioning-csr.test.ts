import { webcrypto } from 'node:crypto';
// @peculiar/x509 needs the Reflect metadata polyfill before it loads.
import 'reflect-metadata';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as x509 from '@peculiar/x509';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CertificateAuthority, InvalidCsrError, type IssuedCertificate, certificateIdOf } from '../../local/certificate-authority.js';
import { type BrokerLogEntry, type IotBroker, startIotBroker } from '../../local/iot-broker.js';
import { CertificateOwnershipTokens, createCertificateFromCsrService } from '../../local/iot-broker/create-certificate-from-csr.js';
import { ThingRegistry } from '../../local/thing-registry.js';
import { claimClientId, claimPolicy, provisioningTemplateName, provisioningTopics } from '../../schemas/provisioning.js';

/**
 * The local IoT Core's CreateCertificateFromCsr (fleet provisioning by claim, issue 11), through the broker's
 * reserved-topic seam: a claim client (mqtt.js over mTLS with the batch's claim certificate) asks for a certificate
 * from a CSR and hears back on `…/accepted` or `…/rejected`, on its own connection only.
 */
const TEMPLATE = provisioningTemplateName();
const { createCertificateFromCsr: csrTopics } = provisioningTopics(TEMPLATE);
const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING = { name: 'ECDSA', hash: 'SHA-256' } as const;

let stateDir: string;
let ca: CertificateAuthority;
let broker: IotBroker;
let registry: ThingRegistry;
let claim: IssuedCertificate;
const tokens = new CertificateOwnershipTokens();
const logs: BrokerLogEntry[] = [];
const clients: MqttClient[] = [];

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'iot-provisioning-csr-'));
  ca = await CertificateAuthority.create();
  const server = await ca.issueServerCertificate(['localhost', '127.0.0.1']);
  registry = ThingRegistry.in(stateDir);
  claim = await ca.issueClientCertificate('heartbeat-claim-batch-B1');
  broker = await startIotBroker({
    port: 0,
    caCertificatePem: ca.certificatePem,
    serverCertificatePem: server.certificatePem,
    serverPrivateKeyPem: server.privateKeyPem,
    registry,
    rules: [],
    claims: { policy: claimPolicy(TEMPLATE), isClaimCertificate: async (id) => id === claim.certificateId },
    reservedTopicServices: [
      createCertificateFromCsrService({ exchange: csrTopics, signer: ca, isInvalidCsr: (error) => error instanceof InvalidCsrError, tokens }),
    ],
    log: (entry) => logs.push(entry),
  });
});

afterEach(() => {
  for (const client of clients.splice(0)) client.end(true);
});

afterAll(async () => {
  await broker?.stop();
  await rm(stateDir, { recursive: true, force: true });
});

function connect(clientId: string, cert: { certificatePem: string; privateKeyPem: string }): MqttClient {
  const client = mqtt.connect({
    protocol: 'mqtts',
    host: '127.0.0.1',
    port: broker.port,
    clientId,
    ca: ca.certificatePem,
    cert: cert.certificatePem,
    key: cert.privateKeyPem,
    servername: 'localhost',
    reconnectPeriod: 0,
    connectTimeout: 5000,
    protocolVersion: 4,
  });
  clients.push(client);
  return client;
}

async function connected(client: MqttClient): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    client.once('connect', () => resolve());
    client.once('error', reject);
    client.once('close', () => reject(new Error('closed before CONNACK')));
  });
}

/** A claim client subscribed to both replies, collecting what it hears. */
async function claimClient(serial: string): Promise<{ client: MqttClient; heard: { topic: string; body: Record<string, unknown> }[] }> {
  const client = connect(claimClientId(serial), claim);
  const heard: { topic: string; body: Record<string, unknown> }[] = [];
  client.on('message', (topic, payload) => heard.push({ topic, body: JSON.parse(payload.toString()) as Record<string, unknown> }));
  await connected(client);
  await client.subscribeAsync([csrTopics.accepted, csrTopics.rejected], { qos: 1 });
  return { client, heard };
}

async function csrFor(thingName: string): Promise<{ csrPem: string; privateKeyPem: string; publicKeyDer: Buffer }> {
  const keys = await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify']);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: `CN=${thingName}`, keys, signingAlgorithm: SIGNING });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)).toString('base64');
  return {
    csrPem: csr.toString('pem'),
    privateKeyPem: `-----BEGIN PRIVATE KEY-----\n${pkcs8.match(/.{1,64}/g)!.join('\n')}\n-----END PRIVATE KEY-----\n`,
    publicKeyDer: Buffer.from(await webcrypto.subtle.exportKey('spki', keys.publicKey)),
  };
}

describe('CreateCertificateFromCsr', () => {
  it('signs the CSR with the local CA: the certificate, its id and an ownership token on accepted, usable once registered', async () => {
    const { client, heard } = await claimClient('LK0001');
    const robot = await csrFor('lekiwi-LK0001');
    await client.publishAsync(csrTopics.request, JSON.stringify({ certificateSigningRequest: robot.csrPem }), { qos: 1 });
    await expect.poll(() => heard.length, { message: 'the reply' }).toBe(1);
    const [reply] = heard;
    expect(reply!.topic).toBe(csrTopics.accepted);
    const { certificateId, certificatePem, certificateOwnershipToken } = reply!.body as Record<string, string>;
    expect(certificateId).toBe(certificateIdOf(certificatePem!));
    const certificate = new x509.X509Certificate(certificatePem!);
    expect(certificate.subject).toBe('CN=lekiwi-LK0001');
    expect(certificate.issuer).toBe(new x509.X509Certificate(ca.certificatePem).subject);
    expect(Buffer.from(certificate.publicKey.rawData)).toEqual(robot.publicKeyDer);
    expect(tokens.redeem(certificateOwnershipToken!)).toBe(certificateId);

    // Attached to nothing yet, the new certificate cannot connect; once attached to its thing, it can.
    const early = connect('lekiwi-LK0001', { certificatePem: certificatePem!, privateKeyPem: robot.privateKeyPem });
    await expect(connected(early)).rejects.toThrow(/Not authorized|closed/i);
    await registry.attach('lekiwi-LK0001', certificateId!);
    await connected(connect('lekiwi-LK0001', { certificatePem: certificatePem!, privateKeyPem: robot.privateKeyPem }));
  });

  it('rejects a payload without a valid CSR with 400 InvalidPayload, naming the problem', async () => {
    const { client, heard } = await claimClient('LK0002');
    await client.publishAsync(csrTopics.request, JSON.stringify({ certificateSigningRequest: 'not a csr' }), { qos: 1 });
    await client.publishAsync(csrTopics.request, JSON.stringify({ csr: 'wrong field' }), { qos: 1 });
    await expect.poll(() => heard.length, { message: 'two replies' }).toBe(2);
    expect(heard).toEqual([
      { topic: csrTopics.rejected, body: { statusCode: 400, errorCode: 'InvalidPayload', errorMessage: expect.stringMatching(/^certificateSigningRequest: not a PEM PKCS #10/) } },
      { topic: csrTopics.rejected, body: { statusCode: 400, errorCode: 'InvalidPayload', errorMessage: 'certificateSigningRequest is missing or not a string' } },
    ]);
  });

  it('answers only the connection that asked: another claim client subscribed to the same replies hears nothing', async () => {
    const asker = await claimClient('LK0003');
    const bystander = await claimClient('LK0004');
    const robot = await csrFor('lekiwi-LK0003');
    await asker.client.publishAsync(csrTopics.request, JSON.stringify({ certificateSigningRequest: robot.csrPem }), { qos: 1 });
    await expect.poll(() => asker.heard.map((reply) => reply.topic), { message: 'the reply' }).toEqual([csrTopics.accepted]);
    // The bystander's own request, made after that reply went out: its reply comes behind anything sent to it before.
    await bystander.client.publishAsync(csrTopics.request, '{}', { qos: 1 });
    await expect.poll(() => bystander.heard.length, { message: "the bystander's own reply" }).toBeGreaterThan(0);
    expect(bystander.heard.map((reply) => reply.topic)).toEqual([csrTopics.rejected]);
  });

  it('a claim client may do nothing else, and a robot may not ask for a certificate', async () => {
    const { client } = await claimClient('LK0005');
    const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
    client.publish('dt/heartbeat/lekiwi-LK0005/telemetry', '{}', { qos: 1 });
    await closed;
    expect(logs).toContainEqual(expect.objectContaining({ clientId: 'claim-LK0005', message: 'Publish not allowed by the thing policy: disconnecting' }));

    const robotCert = await ca.issueClientCertificate('lekiwi-LK0006');
    await registry.attach('lekiwi-LK0006', robotCert.certificateId);
    const robot = connect('lekiwi-LK0006', robotCert);
    await connected(robot);
    const robotClosed = new Promise<void>((resolve) => robot.once('close', () => resolve()));
    robot.publish(csrTopics.request, JSON.stringify({ certificateSigningRequest: (await csrFor('lekiwi-LK0006')).csrPem }), { qos: 1 });
    await robotClosed;
    expect(logs).toContainEqual(expect.objectContaining({ clientId: 'lekiwi-LK0006', topic: csrTopics.request, message: 'Publish not allowed by the thing policy: disconnecting' }));
  });
});
