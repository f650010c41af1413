import { webcrypto } from 'node:crypto';
// @peculiar/x509 needs the Reflect metadata polyfill before it loads.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import mqtt, { type MqttClient } from 'mqtt';
import { PROVISIONING_PARAMETERS, claimClientId, provisioningTopics, type ProvisioningExchange } from '../../schemas/provisioning.js';

/**
 * A bare robot doing fleet provisioning by claim the way AWS documents it, with mqtt.js (tests and bench:provision;
 * the agent's own driver is agent/): connect as `claim-<serial>` with the batch's claim certificate, subscribe to the
 * replies, CreateCertificateFromCsr with a key made here, RegisterThing with the ownership token, then connect as the
 * thing with its own certificate. Plain Node and mqtt.js: no vitest, so the benchmarks can use it.
 */

const EC = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING = { name: 'ECDSA', hash: 'SHA-256' } as const;

export interface Credentials {
  readonly certificatePem: string;
  readonly privateKeyPem: string;
}

export interface Endpoint {
  readonly host: string;
  readonly port: number;
  /** The CA the broker's certificate chains to. */
  readonly caPem: string;
}

/** A reply on an exchange's accepted or rejected topic. */
export interface ProvisioningReply {
  readonly accepted: boolean;
  readonly body: Record<string, unknown>;
}

/** A new EC P-256 key, and a CSR for it (PKCS #8 PEM; the key never leaves the caller). */
export async function keyAndCsr(commonName: string): Promise<{ privateKeyPem: string; csrPem: string }> {
  const keys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ name: `CN=${commonName}`, keys, signingAlgorithm: SIGNING });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey)).toString('base64');
  return {
    privateKeyPem: `-----BEGIN PRIVATE KEY-----\n${pkcs8.match(/.{1,64}/g)!.join('\n')}\n-----END PRIVATE KEY-----\n`,
    csrPem: csr.toString('pem'),
  };
}

/** An mqtt.js connection over mTLS; resolves on CONNACK, rejects on refusal or close. */
export async function connectMqtt(endpoint: Endpoint, clientId: string, credentials: Credentials, timeoutMs = 10_000): Promise<MqttClient> {
  const client = mqtt.connect({
    protocol: 'mqtts',
    host: endpoint.host,
    port: endpoint.port,
    clientId,
    ca: endpoint.caPem,
    cert: credentials.certificatePem,
    key: credentials.privateKeyPem,
    servername: 'localhost',
    reconnectPeriod: 0,
    connectTimeout: timeoutMs,
    protocolVersion: 4,
    keepalive: 30,
  });
  try {
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
      client.once('close', () => reject(new Error(`${clientId}: connection closed before CONNACK`)));
    });
  } catch (error) {
    client.end(true);
    throw error;
  }
  client.removeAllListeners('error');
  client.on('error', () => undefined);
  return client;
}

/** The SUBACK return codes for `filters` (128 = refused); mqtt.js rejects a SUBACK holding a refusal, with the packet. */
export async function subscribeReturnCodes(client: MqttClient, filters: string[]): Promise<number[]> {
  try {
    return (await client.subscribeAsync(filters, { qos: 1 })).map((grant) => grant.qos);
  } catch (error) {
    const granted = (error as { packet?: { granted?: number[] } }).packet?.granted;
    if (!granted) throw error;
    return granted;
  }
}

/** One claim connection, asking one thing at a time. */
export class ClaimSession {
  private constructor(
    readonly client: MqttClient,
    private readonly topics: ReturnType<typeof provisioningTopics>,
    private readonly timeoutMs: number,
  ) {}

  static async open(endpoint: Endpoint, claim: Credentials, serial: string, templateName: string, timeoutMs = 10_000): Promise<ClaimSession> {
    const client = await connectMqtt(endpoint, claimClientId(serial), claim, timeoutMs);
    const topics = provisioningTopics(templateName);
    const { createCertificateFromCsr: csr, registerThing: register } = topics;
    // Subscribed before any request, as the documentation asks.
    await client.subscribeAsync([csr.accepted, csr.rejected, register.accepted, register.rejected], { qos: 1 });
    return new ClaimSession(client, topics, timeoutMs);
  }

  createCertificateFromCsr(csrPem: string): Promise<ProvisioningReply> {
    return this.ask(this.topics.createCertificateFromCsr, { certificateSigningRequest: csrPem });
  }

  registerThing(certificateOwnershipToken: string, parameters: Record<string, string>): Promise<ProvisioningReply> {
    return this.ask(this.topics.registerThing, { certificateOwnershipToken, parameters });
  }

  close(): void {
    this.client.end(true);
  }

  private async ask(exchange: ProvisioningExchange, body: unknown): Promise<ProvisioningReply> {
    const reply = new Promise<ProvisioningReply>((resolve, reject) => {
      const timer = setTimeout(() => done(new Error(`no reply on ${exchange.accepted} or /rejected within ${this.timeoutMs} ms`)), this.timeoutMs);
      const onMessage = (topic: string, payload: Buffer) => {
        if (topic !== exchange.accepted && topic !== exchange.rejected) return;
        done(undefined, { accepted: topic === exchange.accepted, body: JSON.parse(payload.toString('utf8')) as Record<string, unknown> });
      };
      const onClose = () => done(new Error(`the claim connection closed while waiting on ${exchange.request}`));
      const done = (error?: Error, value?: ProvisioningReply) => {
        clearTimeout(timer);
        this.client.off('message', onMessage);
        this.client.off('close', onClose);
        if (error) reject(error);
        else resolve(value!);
      };
      this.client.on('message', onMessage);
      this.client.once('close', onClose);
    });
    await this.client.publishAsync(exchange.request, JSON.stringify(body), { qos: 1 });
    return reply;
  }
}

export interface ProvisionedRobot extends Credentials {
  readonly thingName: string;
  readonly certificateId: string;
  /** Requests or connections made again after a transient failure. */
  readonly retries: number;
}

export class ProvisioningRejected extends Error {
  override readonly name = 'ProvisioningRejected';
  constructor(
    readonly request: 'CreateCertificateFromCsr' | 'RegisterThing',
    readonly body: Record<string, unknown>,
  ) {
    super(`${request} rejected: ${JSON.stringify(body)}`);
  }
}

/**
 * The whole documented flow for one bare robot, retrying what is transient (a connection that fails, a 5xx or a
 * token gone stale: from the CSR again) up to `attempts` times; a 4xx refusal (the hook's) is thrown as is.
 */
export async function provisionByClaim(options: {
  readonly endpoint: Endpoint;
  readonly claim: Credentials;
  readonly serial: string;
  readonly model: string;
  readonly templateName: string;
  readonly attempts?: number;
  readonly timeoutMs?: number;
}): Promise<ProvisionedRobot & { readonly client: MqttClient }> {
  const { endpoint, serial, model } = options;
  const attempts = options.attempts ?? 5;
  const thingCn = `${model}-${serial}`;
  const { privateKeyPem, csrPem } = await keyAndCsr(thingCn);
  let retries = 0;
  for (let attempt = 1; ; attempt++) {
    let session: ClaimSession | undefined;
    try {
      session = await ClaimSession.open(endpoint, options.claim, serial, options.templateName, options.timeoutMs);
      const issued = await session.createCertificateFromCsr(csrPem);
      if (!issued.accepted) throw new ProvisioningRejected('CreateCertificateFromCsr', issued.body);
      const { certificateId, certificatePem, certificateOwnershipToken } = issued.body as Record<string, string>;
      const registered = await session.registerThing(certificateOwnershipToken!, {
        [PROVISIONING_PARAMETERS.serial]: serial,
        [PROVISIONING_PARAMETERS.model]: model,
      });
      if (!registered.accepted) throw new ProvisioningRejected('RegisterThing', registered.body);
      session.close();
      const thingName = String(registered.body.thingName);
      const client = await connectMqtt(endpoint, thingName, { certificatePem: certificatePem!, privateKeyPem }, options.timeoutMs);
      return { thingName, certificateId: certificateId!, certificatePem: certificatePem!, privateKeyPem, retries, client };
    } catch (error) {
      session?.close();
      const status = error instanceof ProvisioningRejected ? Number(error.body.statusCode) : 0;
      const transient = !(error instanceof ProvisioningRejected) || status >= 500 || error.body.errorCode === 'InvalidCertificateOwnershipToken';
      if (!transient || attempt >= attempts) throw error;
      retries++;
      await new Promise((resolve) => setTimeout(resolve, Math.random() * Math.min(5_000, 100 * 2 ** attempt)));
    }
  }
}
