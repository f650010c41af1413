import { EventEmitter } from 'node:events';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Link, LinkEvents, MessageHandler, MqttLinkOptions, QoS } from '../../../agent/adapters/mqtt-link.js';
import { silentLog } from '../../../agent/adapters/json-log.js';
import { ProvisioningStore } from '../../../agent/adapters/provisioning-store.js';
import { parseAgentConfig, type AgentConfig, type ProvisioningSettings } from '../../../agent/config.js';
import type { ProvisioningStep } from '../../../agent/core/provisioning.js';
import { failureReports, FirstBoot, type FirstBootOptions } from '../../../agent/provisioning-driver.js';
import { AgentEvent } from '../../../schemas/device.js';
import { provisioningTopics } from '../../../schemas/provisioning.js';

/**
 * The first-boot driver over a scripted claim link (no broker): what it publishes and in which order, what it
 * persists, how each failure ends. The real MQTT path is test/integration/agent-first-boot.test.ts.
 */

const SERIAL = '10000000abcdef01';
const THING = `lekiwi-${SERIAL}`;
const TEMPLATE = 'heartbeat-claim';
const topics = provisioningTopics(TEMPLATE);
const certificate = (id: string) => `-----BEGIN CERTIFICATE-----\nMIIB${id}\n-----END CERTIFICATE-----\n`;

type Reply = { topic: string; body: Record<string, unknown> } | 'lost';
type Operation = { op: 'start' | 'stop' } | { op: 'subscribe'; topic: string } | { op: 'publish'; topic: string; body: Record<string, unknown> };

/**
 * A cloud answering the two requests by script (default: accept), and the links the driver made. A link's `start`
 * fails with `startFailure` when set (as MqttLink's LinkGaveUpError: `problem`, `cause`).
 */
class ScriptedCloud {
  readonly operations: (Operation & { clientId: string })[] = [];
  readonly links: (MqttLinkOptions & { stopped: boolean })[] = [];
  issued = 0;
  registered: string[] = [];
  csrReplies: Reply[] = [];
  registerReplies: Reply[] = [];
  startFailure: { problem: string; cause: Error } | undefined;
  /** Topics whose subscription the broker refuses (SUBACK 0x80), as MqttLink reports it. */
  refusedSubscriptions = new Set<string>();
  /** Certificates the broker admits as the thing (a registration carried out). */
  readonly admitted = new Set<string>();

  createLink = (options: MqttLinkOptions): Link => {
    const cloud = this;
    const record = { ...options, stopped: false };
    this.links.push(record);
    const handlers = new Map<string, MessageHandler>();
    const emitter = new EventEmitter<LinkEvents>();
    let connected = false;
    const log = (operation: Operation) => cloud.operations.push({ ...operation, clientId: options.clientId });
    const reply = (message: Reply | undefined, fallback: () => { topic: string; body: Record<string, unknown> }) => {
      const answer = message ?? fallback();
      if (answer === 'lost') return;
      queueMicrotask(() => handlers.get(answer.topic)?.(answer.topic, Buffer.from(JSON.stringify(answer.body))));
    };
    return {
      get isConnected() {
        return connected;
      },
      async start() {
        log({ op: 'start' });
        if (cloud.startFailure) throw Object.assign(new Error('gave up'), cloud.startFailure);
        if (options.clientId === THING) {
          const pem = await readFile(options.certificateFile, 'utf8');
          if (![...cloud.admitted].some((id) => pem === certificate(id))) throw Object.assign(new Error('gave up'), { problem: 'rejected', cause: new Error('Not authorized') });
        }
        connected = true;
        emitter.emit('connected', { sessionPresent: false });
      },
      async subscribe(filter: string, handler: MessageHandler) {
        handlers.set(filter, handler);
        if (connected && cloud.refusedSubscriptions.has(filter)) throw new Error(`the broker refused the subscription to ${filter}`);
        if (connected) log({ op: 'subscribe', topic: filter });
      },
      async publish(topic: string, payload: string | Uint8Array, _qos: QoS) {
        const body = JSON.parse(String(payload)) as Record<string, unknown>;
        log({ op: 'publish', topic, body });
        if (topic === topics.createCertificateFromCsr.request) {
          reply(cloud.csrReplies.shift(), () => {
            cloud.issued += 1;
            const id = `c${cloud.issued}`;
            return { topic: topics.createCertificateFromCsr.accepted, body: { certificateId: id, certificatePem: certificate(id), certificateOwnershipToken: `token-${id}` } };
          });
        } else if (topic === topics.registerThing.request) {
          const scripted = cloud.registerReplies.shift();
          const id = String(body.certificateOwnershipToken).replace('token-', '');
          if (scripted === undefined || scripted === 'lost') {
            if (cloud.registered.includes(id)) {
              reply({ topic: topics.registerThing.rejected, body: { statusCode: 400, errorCode: 'InvalidCertificateOwnershipToken', errorMessage: 'the ownership token was already used' } }, () => ({ topic: '', body: {} }));
              return;
            }
            cloud.registered.push(id);
            cloud.admitted.add(id);
          }
          reply(scripted, () => ({ topic: topics.registerThing.accepted, body: { deviceConfiguration: {}, thingName: THING } }));
        }
      },
      on: (event, listener) => emitter.on(event, listener as never),
      off: (event, listener) => emitter.off(event, listener as never),
      async stop() {
        if (!record.stopped) log({ op: 'stop' });
        record.stopped = true;
        connected = false;
      },
    };
  };
}

let dir: string;
let config: AgentConfig & { provisioning: ProvisioningSettings };
let cloud: ScriptedCloud;
let clock: number;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'first-boot-'));
  config = parseAgentConfig(
    {
      endpoint: 'iot.example',
      thingName: THING,
      certificateFile: 'state/certificate.pem.crt',
      privateKeyFile: 'state/private.pem.key',
      stateDir: 'state',
      provisioning: { templateName: TEMPLATE, claimCertificateFile: 'claim.pem', claimPrivateKeyFile: 'claim.key', serialSource: { file: 'serial' }, model: 'lekiwi', batch: 'B1' },
    },
    join(dir, 'agent.json'),
  ) as AgentConfig & { provisioning: ProvisioningSettings };
  cloud = new ScriptedCloud();
  clock = Date.UTC(2026, 11, 1, 12);
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const store = () => new ProvisioningStore(join(config.stateDir, 'provisioning'));
function firstBoot(overrides: Partial<FirstBootOptions> = {}) {
  const waits: number[] = [];
  const boot = new FirstBoot({
    config,
    serial: SERIAL,
    store: store(),
    createLink: cloud.createLink,
    log: silentLog,
    now: () => clock,
    random: () => 0.5,
    wait: async (ms) => {
      waits.push(ms);
      clock += ms;
    },
    replyTimeoutMs: 50,
    ...overrides,
  });
  return { boot, waits };
}

describe('first boot driver', () => {
  it('bare robot: claim link as claim-<serial>, replies subscribed before each request, CSR without the key, RegisterThing with serial, model and batch', async () => {
    const { boot } = firstBoot();
    await expect(boot.run()).resolves.toEqual({ kind: 'ready', thingName: THING });

    expect(cloud.links[0]).toMatchObject({ clientId: `claim-${SERIAL}`, certificateFile: join(dir, 'claim.pem'), privateKeyFile: join(dir, 'claim.key'), stopped: true });
    // Each request goes out only after its accepted and rejected topics are subscribed.
    for (const exchange of [topics.createCertificateFromCsr, topics.registerThing]) {
      const published = cloud.operations.findIndex((operation) => operation.op === 'publish' && operation.topic === exchange.request);
      const subscribedBefore = cloud.operations.slice(0, published).flatMap((operation) => (operation.op === 'subscribe' ? [operation.topic] : []));
      expect(subscribedBefore).toEqual(expect.arrayContaining([exchange.accepted, exchange.rejected]));
    }
    const publishes = cloud.operations.filter((operation) => operation.op === 'publish');
    expect(publishes.map((operation) => operation.topic)).toEqual([topics.createCertificateFromCsr.request, topics.registerThing.request]);
    expect(Object.keys(publishes[0]!.body)).toEqual(['certificateSigningRequest']);
    expect(JSON.stringify(publishes)).not.toMatch(/PRIVATE KEY/);
    expect(JSON.stringify(publishes)).not.toContain((await readFile(store().files.keyFile, 'utf8')).split('\n')[1]);
    expect(publishes[1]!.body).toEqual({ certificateOwnershipToken: 'token-c1', parameters: { SerialNumber: SERIAL, Model: 'lekiwi', Batch: 'B1' } });

    // Registered, not provisioned: the own certificate is installed where agent.json names it, the key is the store's file.
    expect(await store().load()).toMatchObject({ step: 'registered', certificateId: 'c1', thingName: THING });
    expect(await readFile(config.certificateFile, 'utf8')).toBe(certificate('c1'));
    const [installedKey, storedKey] = await Promise.all([stat(config.privateKeyFile), stat(store().files.keyFile)]);
    expect(installedKey.ino).toBe(storedKey.ino);
    expect(installedKey.mode & 0o777).toBe(0o600);
  });

  it('the first connection with its own certificate makes it provisioned; failures met on the way become ProvisioningFailed events, once', async () => {
    cloud.csrReplies.push({ topic: topics.createCertificateFromCsr.rejected, body: { statusCode: 503, errorCode: 'ServiceUnavailable', errorMessage: 'try later' } });
    const { boot, waits } = firstBoot();
    await expect(boot.run()).resolves.toMatchObject({ kind: 'ready' });
    expect(waits).toHaveLength(1);

    await boot.confirmConnected();
    expect(await store().load()).toMatchObject({ step: 'provisioned', thingName: THING, certificateId: 'c1' });
    const reports = failureReports(store(), SERIAL);
    const events = await reports.events();
    expect(events).toHaveLength(1);
    expect(AgentEvent.parse(events[0])).toMatchObject({
      type: 'ProvisioningFailed',
      data: { serial: SERIAL, reason: 'SERVICE_UNAVAILABLE', step: 'key-generated', attempt: 1, detail: expect.stringContaining('try later') },
    });
    await reports.clear();
    expect(await failureReports(store(), SERIAL).events()).toEqual([]);
  });

  it('a refusal by the hook stops at once: exit 78 with its reason, nothing registered, the claim link closed', async () => {
    cloud.registerReplies.push({ topic: topics.registerThing.rejected, body: { statusCode: 403, errorCode: 'AccessDenied', errorMessage: 'HOOK_DENIED_UNKNOWN_SERIAL: the factory never registered this serial' } });
    const { boot, waits } = firstBoot();
    await expect(boot.run()).resolves.toMatchObject({ kind: 'gave-up', exitCode: 78, failure: { reason: 'HOOK_DENIED_UNKNOWN_SERIAL' } });
    expect(waits).toEqual([]);
    expect(cloud.links.every((link) => link.stopped)).toBe(true);
    expect(await store().load()).toMatchObject({ step: 'certificate-issued' });
  });

  it('RegisterThing replies the claim policy refuses to subscribe (agent.json names another template): exit 78 TEMPLATE_NOT_FOUND, nothing published for it', async () => {
    cloud.refusedSubscriptions.add(topics.registerThing.accepted);
    await expect(firstBoot().boot.run()).resolves.toMatchObject({ kind: 'gave-up', exitCode: 78, failure: { reason: 'TEMPLATE_NOT_FOUND' } });
    expect(cloud.operations.filter((operation) => operation.op === 'publish').map((operation) => operation.topic)).toEqual([topics.createCertificateFromCsr.request]);
  });

  it('an unreachable endpoint (the claim link spent its budget): exit 69 ENDPOINT_UNREACHABLE; a refused claim: 78 CLAIM_REJECTED', async () => {
    cloud.startFailure = { problem: 'unreachable', cause: new Error('AWS_IO_SOCKET_CONNECTION_REFUSED') };
    await expect(firstBoot().boot.run()).resolves.toMatchObject({ kind: 'gave-up', exitCode: 69, failure: { reason: 'ENDPOINT_UNREACHABLE' } });
    cloud.startFailure = { problem: 'rejected', cause: new Error('AWS_ERROR_MQTT_UNEXPECTED_HANGUP') };
    await expect(firstBoot().boot.run()).resolves.toMatchObject({ kind: 'gave-up', exitCode: 78, failure: { reason: 'CLAIM_REJECTED' } });
  });

  it('a lost RegisterThing reply: the token is refused on retry, the new certificate already works as the thing, so it goes on with it (one certificate)', async () => {
    cloud.registerReplies.push('lost');
    const { boot } = firstBoot();
    await expect(boot.run()).resolves.toEqual({ kind: 'ready', thingName: THING });
    expect(cloud.issued).toBe(1);
    expect(cloud.registered).toEqual(['c1']);
    expect(cloud.links.map((link) => link.clientId)).toEqual([`claim-${SERIAL}`, THING]);
    expect(await store().load()).toMatchObject({ step: 'registered', certificateId: 'c1' });
  });

  it('an ownership token refused outright (never registered) goes back to the CSR with the same key', async () => {
    cloud.registerReplies.push({ topic: topics.registerThing.rejected, body: { statusCode: 400, errorCode: 'InvalidCertificateOwnershipToken', errorMessage: 'certificateOwnershipToken expired' } });
    const { boot } = firstBoot();
    const key = store().files.keyFile;
    await expect(boot.run()).resolves.toMatchObject({ kind: 'ready' });
    expect(cloud.issued).toBe(2);
    expect(cloud.registered).toEqual(['c2']);
    // It first checked whether the token had been used by itself (its certificate works as the thing): it had not.
    expect(cloud.links.map((link) => link.clientId)).toEqual([`claim-${SERIAL}`, THING, `claim-${SERIAL}`]);
    const csrs = cloud.operations.flatMap((operation) => (operation.op === 'publish' && operation.topic === topics.createCertificateFromCsr.request ? [operation.body.certificateSigningRequest] : []));
    expect(csrs).toHaveLength(2);
    expect(csrs[0]).toBe(csrs[1]);
    expect((await stat(key)).mode & 0o777).toBe(0o600);
  });

  it('provisioned, with its installed certificate and key gone (a crash, a hand edit): installs them again, connects nothing', async () => {
    const { boot } = firstBoot();
    await boot.run();
    await boot.confirmConnected();
    await Promise.all([rm(config.certificateFile), rm(config.privateKeyFile)]);
    const links = cloud.links.length;

    await expect(firstBoot().boot.run()).resolves.toEqual({ kind: 'provisioned', thingName: THING });
    expect(await readFile(config.certificateFile, 'utf8')).toBe(certificate('c1'));
    expect((await stat(config.privateKeyFile)).ino).toBe((await stat(store().files.keyFile)).ino);
    expect(cloud.links).toHaveLength(links);
  });

  it.each<ProvisioningStep>(['key-generated', 'certificate-issued', 'registered'])('stopped right after %s is persisted: the next run resumes there and ends ready', async (stopAt) => {
    const stop = new Error('power cut');
    const first = firstBoot({
      afterPersist: (step) => {
        if (step === stopAt) throw stop;
      },
    });
    await expect(first.boot.run()).rejects.toBe(stop);
    const published = cloud.operations.filter((operation) => operation.op === 'publish').length;
    await expect(firstBoot().boot.run()).resolves.toEqual({ kind: 'ready', thingName: THING });
    expect(cloud.registered).toEqual(['c1']);
    expect(cloud.issued).toBe(1);
    expect(cloud.operations.filter((operation) => operation.op === 'publish').length).toBe(published + (stopAt === 'key-generated' ? 2 : stopAt === 'certificate-issued' ? 1 : 0));
  });
});
