import type * as tls from 'node:tls';
import { Aedes, type Client, type PublishPacket, type Subscription } from 'aedes';
import { describeError } from '../lib/describe-error.js';
import { type CertificateIdentity, authenticator, checkMinKeepAlive, raiseKeepAlive } from './iot-broker/authentication.js';
import { type BrokerLog, type IotBroker, type IotBrokerOptions, PendingWork, defaultLog } from './iot-broker/contract.js';
import { type LifecycleEventOut, Presence } from './iot-broker/presence.js';
import { type DeliverReply, ReservedTopics } from './iot-broker/reserved-topics.js';
import { RulesEngine } from './iot-broker/rules-engine.js';
import { decidePublish, decideSubscribe, mayReceive } from './iot-broker/thing-policy-authorizer.js';
import { MAX_REMAINING_LENGTH, type TlsListener, refuseOversizedPackets, startTlsListener } from './iot-broker/tls-listener.js';
import { presenceTopicOf } from './presence-events.js';
import { IOT_MAX_PAYLOAD_BYTES } from '../schemas/iot-limits.js';
import { THING_POLICY, type ThingPolicyStatement } from '../schemas/thing-policy.js';
import { topicMatches } from './topic-rules.js';

export type { BrokerLogEntry, ClaimAdmission, IotBroker, IotBrokerOptions, RuleAction, RuleRecord } from './iot-broker/contract.js';
export type { ReservedTopicError, ReservedTopicPatternService, ReservedTopicService } from './iot-broker/reserved-topics.js';

/**
 * The local stand-in for AWS IoT Core's message broker, thing policy and rules engine: aedes (MQTT 3.1.1) behind a
 * TLS server that requires a client certificate from the local CA. This file only composes the parts, each of
 * which states its own invariants:
 * - local/iot-broker/tls-listener.ts: the TLS listener (client certificates chaining to the CA) and the guard that
 *   closes a connection announcing a packet too large to be within IoT Core's limits, before its body is buffered;
 * - local/iot-broker/authentication.ts: client id = certificate CN, certificate attached to that thing (or, with
 *   `claims`, a `claim-` client id with a claim certificate, under the claim policy), keep-alive raised to the
 *   minimum IoT allows (a silent client is dropped after 1.5 × keep-alive);
 * - local/iot-broker/thing-policy-authorizer.ts: the thing policy (schemas/thing-policy.ts) and IoT Core's limits
 *   (schemas/iot-limits.ts) on publish, subscribe and delivery;
 * - local/iot-broker/presence.ts: lifecycle events on `$aws/events/presence/...`, who holds a client id;
 * - local/iot-broker/rules-engine.ts: topic rules and Basic Ingest, puts in order per partition key;
 * - local/iot-broker/reserved-topics.ts: the `$aws/...` services (request on a reserved topic, reply on its
 *   accepted/rejected topic to the requesting connection), and the refusal of reserved topics nobody answers.
 *
 * How they meet here (the order matters):
 * - the rules run BEFORE a message is acknowledged: a client's message is put into the stream in `authorizePublish`,
 *   the one hook aedes (1.2) waits for before it writes the PUBACK (its `published` hook runs after the PUBACK has
 *   gone out), so a QoS 1 PUBACK means the message is in the stream. A put that fails leaves the client without a
 *   PUBACK: the broker logs it and disconnects the client (SERVER_ERROR), and the client sends the message again
 *   after reconnecting;
 * - the broker's lifecycle events enter the rules the moment the connection changes, so they keep their place among
 *   the client's messages;
 * - messages the cloud publishes (`publish()`) go through the rules in aedes's `published` hook, and `publish()`
 *   resolves after their puts;
 * - a request to a reserved-topic service is acknowledged, then answered; it goes to no rule.
 */

/** stop() waits at most this long for the clock to pass the highest versionNumber issued (see LifecycleVersions). */
const MAX_VERSION_CLOCK_WAIT_MS = 5_000;

export async function startIotBroker(options: IotBrokerOptions): Promise<IotBroker> {
  const minKeepAlive = options.minKeepAliveSeconds ?? 30;
  checkMinKeepAlive(minKeepAlive);
  const broker = new LocalIotBroker(options, minKeepAlive);
  await broker.listen();
  return {
    port: broker.port,
    connectedThings: () => broker.presence.connectedThings(),
    idle: () => broker.work.idle(),
    publish: (topic, payload) => broker.publishAsCloud(topic, payload),
    stop: () => broker.stop(),
  };
}

/**
 * The composition: one aedes instance whose hooks ask the units, one TLS listener feeding it.
 * INVARIANT: once `stopping` is set, no connection is accepted, admitted or announced, and the cloud cannot publish.
 */
class LocalIotBroker {
  readonly log: BrokerLog;
  readonly work = new PendingWork();
  readonly rules: RulesEngine;
  readonly presence: Presence;
  readonly reserved: ReservedTopics;
  readonly aedes: Aedes;
  /** The certificate each admitted client connected with. */
  private readonly identities = new WeakMap<Client, CertificateIdentity>();
  /** The policy each admitted client acts under: the thing policy, or the claim policy for a claim client. */
  private readonly policies = new WeakMap<Client, readonly ThingPolicyStatement[]>();
  /** The broker's own packets already offered to the rules (lifecycle events): `published` passes them by. */
  private readonly routedAlready = new WeakSet<object>();
  private listener: TlsListener | undefined;
  private stopping = false;
  private stopped: Promise<void> | undefined;

  constructor(
    private readonly options: IotBrokerOptions,
    private readonly minKeepAlive: number,
  ) {
    this.log = options.log ?? defaultLog;
    this.rules = new RulesEngine(options.rules, this.log, this.work.track);
    this.presence = new Presence(this.log, (event) => this.publishLifecycle(event));
    this.reserved = new ReservedTopics(options.reservedTopicServices ?? [], this.log, options.reservedTopicPatternServices ?? []);
    this.aedes = this.createAedes();
  }

  get port(): number {
    return this.listener?.port ?? this.options.port;
  }

  private createAedes(): Aedes {
    const { log, presence } = this;
    const aedes = new Aedes({
      preConnect: (client, packet, callback) => {
        if (this.stopping) return callback(new Error('the broker is stopping'), false);
        raiseKeepAlive(packet, this.minKeepAlive, log);
        callback(null, true);
      },
      authenticate: authenticator({
        registry: this.options.registry,
        log,
        isStopping: () => this.stopping,
        claims: this.options.claims,
        onAdmitted: (client, identity, policy) => {
          this.identities.set(client, identity);
          this.policies.set(client, policy);
          presence.admitted(client, identity.certificateId);
        },
      }),
      authorizePublish: (client, packet, callback) => this.authorizePublish(client, packet, callback),
      authorizeSubscribe: (client, subscription, callback) => this.authorizeSubscribe(client, subscription, callback),
      authorizeForward: (client, packet) => (mayReceive(client.id, packet.topic, this.policyOf(client)) ? packet : null),
      published: (packet, client, callback) => {
        // A client's message (and its will) went to the rules in authorizePublish, before the PUBACK; a lifecycle
        // event when the broker made it. What is left is what the cloud publishes: acknowledged once its puts are done.
        if (client || this.routedAlready.has(packet)) return callback(null);
        this.rules.route(packet.topic, packet.payload, undefined).then(
          () => callback(null),
          (error: unknown) => callback(error instanceof Error ? error : new Error(String(error))),
        );
      },
    });
    // An 'error' event without a listener would throw and take the whole local cloud down.
    (aedes as unknown as NodeJS.EventEmitter).on('error', (error: Error) => log({ level: 'error', message: 'Broker error', error: error.message }));
    aedes.on('connectionError', (_client, error) => log({ level: 'debug', message: 'Connection dropped before CONNECT completed', error: error.message }));
    aedes.on('clientError', (client, error) => {
      presence.clientError(client, error);
      log({ level: 'debug', message: 'Client connection error', clientId: client.id, error: error.message });
    });
    aedes.on('keepaliveTimeout', (client) => {
      presence.endWith(client, 'MQTT_KEEP_ALIVE_TIMEOUT');
      log({ level: 'info', message: 'Keep-alive timeout: disconnecting', clientId: client.id });
    });
    aedes.on('clientReady', (client) => presence.ready(client, this.stopping));
    aedes.on('clientDisconnect', (client) => presence.ended(client));
    return aedes;
  }

  async listen(): Promise<void> {
    await this.aedes.listen();
    try {
      this.listener = await startTlsListener({
        port: this.options.port,
        host: this.options.host ?? '127.0.0.1',
        caCertificatePem: this.options.caCertificatePem,
        serverCertificatePem: this.options.serverCertificatePem,
        serverPrivateKeyPem: this.options.serverPrivateKeyPem,
        log: this.log,
        onConnection: (socket) => this.accept(socket),
      });
    } catch (error) {
      await new Promise<void>((resolve) => this.aedes.close(() => resolve()));
      throw error;
    }
    this.log({ level: 'info', message: 'IoT broker listening', port: this.port, rules: this.rules.ruleNames });
  }

  /** A TLS connection whose client certificate Node verified: to aedes, with its IP and the packet size guard. */
  private accept(socket: tls.TLSSocket): void {
    if (this.stopping) {
      socket.destroy();
      return;
    }
    const client = this.aedes.handle(socket);
    this.presence.opened(client, socket.remoteAddress?.replace(/^::ffff:/, ''));
    refuseOversizedPackets(client, () => {
      this.presence.endWith(client, 'CLIENT_ERROR');
      this.log({ level: 'warn', message: `A packet over ${MAX_REMAINING_LENGTH} bytes (IoT Core's payload limit is ${IOT_MAX_PAYLOAD_BYTES}): disconnecting`, clientId: client.id });
    });
    socket.once('close', () => this.presence.ended(client));
  }

  private authorizePublish(client: Client | null, packet: PublishPacket, callback: (error?: Error | null) => void): void {
    if (!client) return callback(null);
    // A will is checked after the connection closed; only a live publish ends the connection for these reasons.
    const live = client.connected && !client.closed;
    const decision = decidePublish(client.id, packet, this.policyOf(client));
    if (!decision.allowed) {
      if (live) {
        this.presence.endWith(client, decision.reason);
        this.log({ level: 'warn', message: decision.logMessage, clientId: client.id, topic: packet.topic });
      }
      return callback(new Error(`${client.id} ${decision.problem}`));
    }
    const reserved = this.reserved.resolve(packet.topic);
    if (reserved.kind === 'refused') {
      if (live) {
        this.presence.endWith(client, 'CLIENT_ERROR');
        this.log({ level: 'warn', message: 'Publish to an unsupported reserved topic: disconnecting', clientId: client.id, topic: packet.topic });
      }
      return callback(new Error(`${client.id} ${reserved.problem}`));
    }
    if (reserved.kind === 'service') {
      const certificate = this.identities.get(client);
      callback(null);
      if (!live || !certificate) return; // a will asks no service
      const request = { clientId: client.id, certificate, topic: packet.topic, payload: Buffer.from(packet.payload) };
      this.work.track(this.reserved.dispatch(reserved.service, request, this.replyTo(client)));
      return;
    }
    if (reserved.kind === 'patternService') {
      const certificate = this.identities.get(client);
      callback(null);
      if (!live || !certificate) return; // a will asks no service
      const request = { clientId: client.id, certificate, topic: packet.topic, payload: Buffer.from(packet.payload) };
      // IoT Jobs answers "whether your client has subscribed to the response message topic or not".
      this.work.track(this.reserved.dispatchPattern(reserved.service, request, this.replyTo(client, { evenUnsubscribed: true })));
      return;
    }
    // Into the stream before aedes writes the PUBACK, which it does once this calls back (see the header).
    this.putBeforeAcknowledging(client, packet, callback);
  }

  private authorizeSubscribe(client: Client, subscription: Subscription, callback: (error: Error | null, subscription?: Subscription | null) => void): void {
    const decision = decideSubscribe(client.id, subscription, this.policyOf(client));
    if (decision.kind === 'grant') return callback(null, subscription);
    if (decision.kind === 'refuseFilter') {
      this.log({ level: 'warn', message: decision.logMessage, clientId: client.id, topicFilter: subscription.topic });
      return callback(null, null); // SUBACK 0x80 for this filter
    }
    // IoT Core sends no SUBACK for QoS 2; the connection is closed.
    this.presence.endWith(client, decision.reason);
    this.log({ level: 'warn', message: decision.logMessage, clientId: client.id, topicFilter: subscription.topic });
    callback(new Error(`${client.id} ${decision.problem}`), null);
  }

  private policyOf(client: Client): readonly ThingPolicyStatement[] {
    return this.policies.get(client) ?? THING_POLICY;
  }

  /**
   * A client's message (or its will) through the rules; `callback` (aedes's authorizePublish callback) once every put
   * is in the stream, which lets aedes write the PUBACK and forward the message. A failed put calls back with the
   * error: aedes then writes no PUBACK and closes the connection (IoT Core would run the rule's error action).
   */
  private putBeforeAcknowledging(client: Client, packet: PublishPacket, callback: (error?: Error | null) => void): void {
    this.rules.route(packet.topic, packet.payload, client.id).then(
      () => callback(null),
      (error: unknown) => {
        // A will is put after its connection closed; only a live publish ends the connection for this reason.
        if (client.connected && !client.closed) {
          this.presence.endWith(client, 'SERVER_ERROR');
          this.log({
            level: 'error',
            message: 'A rule could not put the message into its stream: no PUBACK, disconnecting',
            clientId: client.id,
            topic: packet.topic,
            error: describeError(error),
          });
        }
        callback(error instanceof Error ? error : new Error(String(error)));
      },
    );
  }

  /**
   * A reserved-topic service's reply, to the requesting connection only, on a topic it subscribed to (at the QoS it
   * asked for, at most 1) — or, `evenUnsubscribed` (IoT Jobs), at QoS 0 when it did not subscribe — and only with
   * `Receive` on it (aedes applies authorizeForward to `client.publish`).
   */
  private replyTo(client: Client, { evenUnsubscribed = false } = {}): DeliverReply {
    return (topic, body) =>
      new Promise<void>((resolve, reject) => {
        if (client.closed) return reject(new Error(`${client.id} disconnected before the reply on ${topic}`));
        const subscriptions = (client as unknown as { subscriptions?: Record<string, { qos?: number }> }).subscriptions ?? {};
        const qoses = Object.entries(subscriptions)
          .filter(([filter]) => topicMatches(filter, topic))
          .map(([, subscription]) => Math.min(subscription.qos ?? 0, 1));
        if (qoses.length === 0 && evenUnsubscribed) qoses.push(0);
        if (qoses.length === 0) {
          this.log({ level: 'debug', message: 'Reply dropped: the client is not subscribed to its topic', clientId: client.id, topic });
          return resolve();
        }
        const packet: PublishPacket = { cmd: 'publish', topic, payload: Buffer.from(JSON.stringify(body)), qos: Math.max(...qoses) as 0 | 1, dup: false, retain: false };
        client.publish(packet, (error) => (error ? reject(error) : resolve()));
      });
  }

  private publishLifecycle(event: LifecycleEventOut): void {
    const topic = presenceTopicOf(event);
    const payload = Buffer.from(JSON.stringify(event));
    // Into the rules now, synchronously, so the event keeps its place among the client's messages (aedes would call
    // `published` a few ticks later); then to subscribers. A failed put is logged by the rules engine.
    void this.rules.route(topic, payload, undefined, { lifecycle: true }).catch(() => undefined);
    this.work.track(
      this.publishPacket(topic, payload, { routed: true }).catch((error: unknown) =>
        this.log({ level: 'error', message: 'Lifecycle event not published', clientId: event.clientId, error: describeError(error) }),
      ),
    );
  }

  private publishPacket(topic: string, payload: Buffer, { routed = false } = {}): Promise<void> {
    const packet: PublishPacket = { cmd: 'publish', topic, payload, qos: 1, dup: false, retain: false };
    if (routed) this.routedAlready.add(packet);
    return new Promise((resolve, reject) => this.aedes.publish(packet, (error) => (error ? reject(error) : resolve())));
  }

  async publishAsCloud(topic: string, payload: unknown): Promise<void> {
    if (this.stopping) throw new Error(`Cannot publish to ${topic}: the broker is stopped`);
    if (topic.length === 0 || topic.includes('+') || topic.includes('#')) {
      throw new Error(`Cannot publish to "${topic}": a topic is not empty and has no + or # wildcard`);
    }
    await this.publishPacket(topic, payloadBytes(payload));
  }

  stop(): Promise<void> {
    return (this.stopped ??= this.stopNow());
  }

  private async stopNow(): Promise<void> {
    this.stopping = true;
    const listener = this.listener!;
    const serverClosed = listener.close();
    const everyone = this.presence.endAllForStop();
    await Promise.all(everyone.map((client) => new Promise<void>((resolve) => client.close(() => resolve()))));
    for (const client of everyone) this.presence.ended(client);
    // The `disconnected` events must be through the broker before it closes.
    await this.work.idle();
    await new Promise<void>((resolve) => this.aedes.close(() => resolve()));
    listener.destroyAll();
    await serverClosed;
    await this.work.idle();
    await waitForClockPast(this.presence.highestVersion(), this.log);
    this.log({ level: 'info', message: 'IoT broker stopped', port: this.port });
  }
}

/** Bytes are sent as they are, a string as its UTF-8 text, anything else as JSON. */
function payloadBytes(payload: unknown): Buffer {
  if (Buffer.isBuffer(payload)) return payload;
  if (payload instanceof Uint8Array) return Buffer.from(payload);
  if (typeof payload === 'string') return Buffer.from(payload, 'utf8');
  const json = JSON.stringify(payload);
  if (json === undefined) throw new Error(`Cannot publish ${typeof payload}: it has no JSON form`);
  return Buffer.from(json, 'utf8');
}

/**
 * Holds until the wall clock's seconds exceed `version`, so that a broker started after this one returns issues
 * larger versionNumbers than any this one issued (LifecycleVersions explains why). Usually under a second.
 */
async function waitForClockPast(version: number, log: BrokerLog): Promise<void> {
  const deadline = Date.now() + MAX_VERSION_CLOCK_WAIT_MS;
  while (Math.floor(Date.now() / 1000) <= version) {
    if (Date.now() >= deadline) {
      log({ level: 'warn', message: 'versionNumbers ran ahead of the clock: a broker started now may repeat some', version });
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(1000 - (Date.now() % 1000) + 5, 250)));
  }
}
