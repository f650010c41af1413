import { createHash, randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import * as tls from 'node:tls';
import { Aedes, type Client, type ConnectPacket, type PublishPacket } from 'aedes';
import { IOT_MAX_PAYLOAD_BYTES, IOT_MAX_QOS } from '../schemas/iot-limits.js';
import { isAllowed } from '../schemas/thing-policy.js';
import type { TopicRule } from '../schemas/topics.js';
import {
  type DisconnectReason,
  LifecycleVersions,
  type PresenceSession,
  connectedEvent,
  disconnectedEvent,
  presenceTopicOf,
} from './presence-events.js';
import {
  type ParsedRuleSql,
  type PartitionKeyTemplate,
  type RuleMessage,
  applyRuleSql,
  parseBasicIngestTopic,
  parsePartitionKey,
  parseRuleSql,
  partitionKeyOf,
  topicMatches,
} from './topic-rules.js';
import { describeError } from '../lib/describe-error.js';

/**
 * The local stand-in for AWS IoT Core's message broker, thing policy and rules engine: aedes (MQTT 3.1.1) behind a
 * TLS server that requires a client certificate from the local CA. It behaves like IoT Core where the system relies
 * on it:
 * - connect: client id = certificate CN, and the certificate (by its id, SHA-256 of the DER) attached to that thing;
 *   otherwise CONNACK "not authorized" and the connection closed;
 * - the thing policy (schemas/thing-policy.ts) on publish (a forbidden one disconnects the client), subscribe
 *   (a forbidden filter gets SUBACK 0x80) and delivery (`Receive`);
 * - lifecycle events on `$aws/events/presence/...` with IoT's fields, reasons and versionNumber;
 * - keep-alive raised to the minimum IoT allows, a silent client dropped after 1.5 × keep-alive;
 * - IoT Core's limits (schemas/iot-limits.ts): a PUBLISH with a payload over 128 KB or at QoS 2, or a SUBSCRIBE at
 *   QoS 2, closes the connection (lifecycle CLIENT_ERROR) with no PUBACK/PUBREC/SUBACK, and the message goes to no
 *   rule and no subscriber; a packet too large to be a PUBLISH within the limit closes it as soon as its length is
 *   read, before its body is buffered;
 * - topic rules (the SQL subset and partition key templates in local/topic-rules.ts) and Basic Ingest, each rule's
 *   action a put into an ordered channel (the ingest Kinesis stream) keyed by the robot.
 *
 * The rules run BEFORE a message is acknowledged: a client's message is put into the stream in `authorizePublish`,
 * the one hook aedes (1.2) waits for before it writes the PUBACK (its `published` hook runs after the PUBACK has
 * gone out), so a QoS 1 PUBACK means the message is in the stream. A put that fails leaves the client without a
 * PUBACK: the broker logs it and disconnects the client (SERVER_ERROR), and the client sends the message again
 * after reconnecting. Puts for one partition key go one after another in the order the broker received the
 * messages, the broker's own lifecycle events included (they enter the rules the moment the connection changes);
 * a message's put queued behind one that failed fails too, so nothing the client sent after it overtakes the message
 * being resent (a lifecycle event, which nobody resends, is put anyway).
 * Messages the cloud publishes (`publish()`) go through the rules in aedes's `published` hook, and `publish()`
 * resolves after their puts.
 */

/** What a rule's Kinesis action puts: the partition key from the rule's template and the SQL's output. */
export interface RuleRecord {
  readonly partitionKey: string;
  readonly data: Record<string, unknown>;
}

export interface RuleAction {
  readonly rule: TopicRule;
  /** The rule's action: resolves once the record is durably in the stream, rejects if it is not. */
  readonly put: (record: RuleRecord) => Promise<void>;
}

export type BrokerLogEntry = { level: 'debug' | 'info' | 'warn' | 'error'; message: string; [k: string]: unknown };

export interface IotBrokerOptions {
  readonly port: number; // 0 = any free port
  readonly host?: string; // default '127.0.0.1'
  readonly caCertificatePem: string; // client certs must chain to it
  readonly serverCertificatePem: string;
  readonly serverPrivateKeyPem: string;
  readonly registry: { isAttached(thingName: string, certificateId: string): Promise<boolean> };
  readonly rules: readonly RuleAction[];
  /** IoT Core raises keep-alives below 30 s to 30 s; tests set this lower (e.g. 1). Default 30. */
  readonly minKeepAliveSeconds?: number;
  readonly log?: (entry: BrokerLogEntry) => void;
}

export interface IotBroker {
  readonly port: number;
  connectedThings(): string[];
  /** Resolves when every put under way (and every lifecycle publish) has finished (tests/benchmarks wait on it). */
  idle(): Promise<void>;
  /**
   * Publishes a message as the cloud would (e.g. a command to `cmd/heartbeat/<thing>/report-now`), QoS 1; it goes
   * through the rules too, and the promise rejects if one of their puts failed.
   */
  publish(topic: string, payload: unknown): Promise<void>;
  /** Disconnects everyone (lifecycle `disconnected` with SERVER_INITIATED_DISCONNECT), waits for the puts, closes. */
  stop(): Promise<void>;
}

/** IoT Core's keep-alive range: a request of 0 (none) gets the maximum. */
const MAX_KEEP_ALIVE_SECONDS = 1200;
/** A TLS client has this long to finish its handshake. */
const HANDSHAKE_TIMEOUT_MS = 10_000;
/** stop() waits at most this long for the clock to pass the highest versionNumber issued (see LifecycleVersions). */
const MAX_VERSION_CLOCK_WAIT_MS = 5_000;
/**
 * The largest MQTT remaining length a client may announce: a PUBLISH at the payload limit with the longest topic
 * MQTT can carry and a packet id. Anything longer cannot be within IoT Core's limits; it is refused unread.
 */
const MAX_REMAINING_LENGTH = IOT_MAX_PAYLOAD_BYTES + 2 + 65_535 + 2;
/** MQTT 3.1.1 CONNACK return codes aedes passes through. */
const SERVER_UNAVAILABLE = 3;
const NOT_AUTHORIZED = 5;

/** What the broker knows about one TLS connection beyond what aedes keeps. */
interface Connection {
  readonly ipAddress: string | undefined;
  certificateId?: string;
  /** Set once the `connected` lifecycle event went out. */
  session?: PresenceSession;
  /** The first reason the broker itself decided to end the connection. */
  reason?: DisconnectReason;
  /** A newer connection with the same client id that is taking this one's place. */
  takenOverBy?: Client;
  /** Set once the connection is over (see `ended`): its `disconnected` went out, and no `connected` may follow. */
  ended?: boolean;
}

interface CompiledRule {
  readonly action: RuleAction;
  readonly sql: ParsedRuleSql;
  readonly partitionKey: PartitionKeyTemplate;
}

export async function startIotBroker(options: IotBrokerOptions): Promise<IotBroker> {
  const log = options.log ?? defaultLog;
  const minKeepAlive = options.minKeepAliveSeconds ?? 30;
  if (!Number.isInteger(minKeepAlive) || minKeepAlive < 1 || minKeepAlive > MAX_KEEP_ALIVE_SECONDS) {
    throw new Error(`minKeepAliveSeconds must be a whole number of seconds from 1 to ${MAX_KEEP_ALIVE_SECONDS}, got ${minKeepAlive}`);
  }
  const rules = compileRules(options.rules);
  const rulesByName = new Map(rules.map((rule) => [rule.action.rule.name, rule]));
  /** The last put per partition key: the next one waits for it (see putInOrder). */
  const putChains = new Map<string, Promise<void>>();
  /** The broker's own packets already offered to the rules (lifecycle events): `published` passes them by. */
  const routedAlready = new WeakSet<object>();

  const connections = new WeakMap<Client, Connection>();
  /** Per client id, the connection holding it: the last one to become ready (see clientReady). */
  const live = new Map<string, Client>();
  /** Connections whose `connected` went out and whose `disconnected` has not yet. */
  const announced = new Set<Client>();
  const versions = new LifecycleVersions();
  /** Puts and lifecycle publishes under way. */
  const pending = new Set<Promise<unknown>>();
  const track = (work: Promise<unknown>): void => {
    pending.add(work);
    void work.finally(() => pending.delete(work));
  };
  let stopping = false;

  const aedes = new Aedes({
    preConnect(client, packet, callback) {
      if (stopping) return callback(new Error('the broker is stopping'), false);
      raiseKeepAlive(packet);
      callback(null, true);
    },
    authenticate(client, _username, _password, done) {
      const refuse = (why: string, fields: Record<string, unknown> = {}, returnCode = NOT_AUTHORIZED): void => {
        log({ level: 'warn', message: `MQTT connection refused: ${why}`, clientId: client.id, ...fields });
        done(Object.assign(new Error(why), { returnCode }), false);
      };
      if (stopping) return refuse('the broker is stopping', {}, SERVER_UNAVAILABLE);
      const certificate = (client.conn as tls.TLSSocket).getPeerCertificate?.();
      if (!certificate?.raw) return refuse('no client certificate');
      const certificateId = createHash('sha256').update(certificate.raw).digest('hex');
      const commonName: unknown = certificate.subject?.CN;
      if (typeof commonName !== 'string') return refuse('the certificate has no single CN', { certificateId });
      if (client.id !== commonName) {
        return refuse(`the client id is not the certificate's CN "${commonName}"`, { certificateId });
      }
      options.registry.isAttached(client.id, certificateId).then(
        (attached) => {
          if (!attached) return refuse(`certificate ${certificateId} is not attached to a thing named "${client.id}"`, { certificateId });
          if (!isAllowed('Connect', client.id, client.id)) return refuse('the thing policy does not allow this client id', { certificateId });
          const connection = connectionOf(client);
          connection.certificateId = certificateId;
          const previous = live.get(client.id);
          if (previous && previous !== client) connectionOf(previous).takenOverBy = client;
          done(null, true);
        },
        (error: unknown) => {
          log({ level: 'error', message: 'The thing registry could not be read', error: describeError(error) });
          refuse('the thing registry could not be read', { certificateId }, SERVER_UNAVAILABLE);
        },
      );
    },
    authorizePublish(client, packet, callback) {
      if (!client) return callback(null);
      const beyondLimits = beyondIotLimits(packet);
      if (beyondLimits) {
        // A will is checked after the connection closed; only a live publish ends the connection for this reason.
        if (client.connected && !client.closed) {
          connectionOf(client).reason ??= 'CLIENT_ERROR';
          log({ level: 'warn', message: `Publish refused as IoT Core refuses it (${beyondLimits}): disconnecting`, clientId: client.id, topic: packet.topic });
        }
        return callback(new Error(`${client.id} published ${beyondLimits}`));
      }
      // Into the stream before aedes writes the PUBACK, which it does once this calls back (see the header).
      if (isAllowed('Publish', client.id, packet.topic)) return putBeforeAcknowledging(client, packet, callback);
      // A will is checked after the connection closed; only a live publish ends the connection for this reason.
      if (client.connected && !client.closed) {
        connectionOf(client).reason ??= 'FORBIDDEN_ACCESS';
        log({ level: 'warn', message: 'Publish not allowed by the thing policy: disconnecting', clientId: client.id, topic: packet.topic });
      }
      callback(new Error(`${client.id} may not publish to ${packet.topic}`));
    },
    authorizeSubscribe(client, subscription, callback) {
      if (subscription.qos > IOT_MAX_QOS) {
        // IoT Core sends no SUBACK for QoS 2; the connection is closed.
        connectionOf(client).reason ??= 'CLIENT_ERROR';
        log({ level: 'warn', message: `Subscription at QoS ${subscription.qos} refused (IoT Core supports QoS 0 and 1): disconnecting`, clientId: client.id, topicFilter: subscription.topic });
        return callback(new Error(`${client.id} subscribed at QoS ${subscription.qos}`), null);
      }
      if (isAllowed('Subscribe', client.id, subscription.topic)) return callback(null, subscription);
      log({ level: 'warn', message: 'Subscription not allowed by the thing policy', clientId: client.id, topicFilter: subscription.topic });
      callback(null, null); // SUBACK 0x80 for this filter
    },
    authorizeForward(client, packet) {
      // Basic Ingest messages go to their rule only; nothing reaches a robot without `Receive` on the topic.
      if (parseBasicIngestTopic(packet.topic)) return null;
      return isAllowed('Receive', client.id, packet.topic) ? packet : null;
    },
    published(packet, client, callback) {
      // A client's message (and its will) went to the rules in authorizePublish, before the PUBACK; a lifecycle event
      // when the broker made it. What is left is what the cloud publishes: acknowledged once its puts are done.
      if (client || routedAlready.has(packet)) return callback(null);
      route(packet.topic, packet.payload, undefined).then(
        () => callback(null),
        (error: unknown) => callback(error instanceof Error ? error : new Error(String(error))),
      );
    },
  });
  // An 'error' event without a listener would throw and take the whole local cloud down.
  (aedes as unknown as NodeJS.EventEmitter).on('error', (error: Error) => log({ level: 'error', message: 'Broker error', error: error.message }));
  aedes.on('connectionError', (_client, error) => log({ level: 'debug', message: 'Connection dropped before CONNECT completed', error: error.message }));
  aedes.on('clientError', (client, error) => {
    const connection = connections.get(client);
    // A socket error (ECONNRESET…) is a lost connection; anything else (a malformed packet) is the client's error.
    if (connection && connection.reason === undefined && !(error as NodeJS.ErrnoException).code) connection.reason = 'CLIENT_ERROR';
    log({ level: 'debug', message: 'Client connection error', clientId: client.id, error: error.message });
  });
  aedes.on('keepaliveTimeout', (client) => {
    connectionOf(client).reason ??= 'MQTT_KEEP_ALIVE_TIMEOUT';
    log({ level: 'info', message: 'Keep-alive timeout: disconnecting', clientId: client.id });
  });
  /*
   * Presence. The rule the cloud relies on: folding every lifecycle event the broker published, in any order, through
   * the presence ordering (versionNumber, a disconnect winning over its connect) leaves a client id connected iff the
   * broker holds a connection for it, with that connection's session. So the broker itself decides who holds a
   * client id, in one place and one order: a connection that becomes ready (CONNACK sent) takes the client id from
   * the one holding it (closed as DUPLICATE_CLIENTID) and gets the next, highest versionNumber; every connection that
   * was announced is announced `disconnected` exactly once, when it ends, whichever way it ends.
   *
   * aedes's own duplicate-client-id handling cannot be relied on for this. Its registerClient closes the client it
   * finds registered under the id and registers the newcomer when that close completes, which is asynchronous for a
   * client with subscriptions; a client that finishes closing deletes whatever is registered under its id, even a
   * newer client. With several connections of one id at once, a newcomer's registration is deleted by the client it
   * replaced, the next newcomer finds nobody to close, and two connections stay up; the one left out of aedes's
   * registry then ends without aedes emitting `clientDisconnect`, so its `disconnected` never went out and the robot
   * stayed online with no connection. Hence the takeover here and `ended` on the socket's close as well.
   */
  aedes.on('clientReady', (client) => {
    const connection = connections.get(client);
    if (client.closed || client.conn.destroyed || !connection?.certificateId || connection.ended) return;
    if (stopping) {
      // Too late to announce: stop() has already taken its list of connections to close.
      client.close();
      return;
    }
    const previous = live.get(client.id);
    if (previous && previous !== client) {
      const replaced = connectionOf(previous);
      replaced.takenOverBy = client;
      if (!previous.closed) {
        replaced.reason ??= 'DUPLICATE_CLIENTID';
        log({ level: 'info', message: 'Client id taken over by a newer connection: closing the older one', clientId: client.id });
        previous.close();
      }
    }
    const session: PresenceSession = {
      clientId: client.id,
      sessionIdentifier: randomUUID(),
      principalIdentifier: connection.certificateId,
      ...(connection.ipAddress ? { ipAddress: connection.ipAddress } : {}),
      versionNumber: versions.next(client.id),
    };
    connection.session = session;
    live.set(client.id, client);
    announced.add(client);
    log({ level: 'info', message: 'Robot connected', clientId: client.id, versionNumber: session.versionNumber });
    publishLifecycle(connectedEvent(session, Date.now()));
  });
  aedes.on('clientDisconnect', (client) => ended(client));
  await aedes.listen();

  /**
   * A connection is over: called when aedes unregisters the client and when its socket closes (aedes does not
   * always do the former, see above), and by stop(); whichever comes first counts.
   */
  function ended(client: Client): void {
    const connection = connections.get(client);
    if (!connection || connection.ended) return;
    connection.ended = true;
    announced.delete(client);
    if (!connection.session) return;
    if (live.get(client.id) === client) live.delete(client.id);
    const reason: DisconnectReason =
      connection.reason ??
      (connection.takenOverBy && !connection.takenOverBy.closed
        ? 'DUPLICATE_CLIENTID'
        : (client as unknown as { _disconnected?: boolean })._disconnected // aedes sets it on a DISCONNECT packet
          ? 'CLIENT_INITIATED_DISCONNECT'
          : 'CONNECTION_LOST');
    log({ level: 'info', message: 'Robot disconnected', clientId: client.id, reason, versionNumber: connection.session.versionNumber });
    publishLifecycle(disconnectedEvent(connection.session, reason, Date.now()));
  }

  function connectionOf(client: Client): Connection {
    let connection = connections.get(client);
    if (!connection) {
      connection = { ipAddress: undefined };
      connections.set(client, connection);
    }
    return connection;
  }

  function raiseKeepAlive(packet: ConnectPacket): void {
    const requested = packet.keepalive ?? 0;
    const granted = requested === 0 ? MAX_KEEP_ALIVE_SECONDS : Math.min(Math.max(requested, minKeepAlive), MAX_KEEP_ALIVE_SECONDS);
    if (granted !== requested) {
      log({ level: 'debug', message: 'Keep-alive adjusted to IoT Core limits', clientId: packet.clientId, requested, granted });
    }
    // aedes arms its 1.5 × keep-alive timer from this same packet after preConnect.
    packet.keepalive = granted;
  }

  function publishLifecycle(event: ReturnType<typeof connectedEvent> | ReturnType<typeof disconnectedEvent>): void {
    const topic = presenceTopicOf(event);
    const payload = Buffer.from(JSON.stringify(event));
    // Into the rules now, synchronously, so the event keeps its place among the client's messages (aedes would call
    // `published` a few ticks later); then to subscribers. A failed put is logged by putInOrder.
    void route(topic, payload, undefined, { lifecycle: true }).catch(() => undefined);
    track(
      publishPacket(topic, payload, { routed: true }).catch((error: unknown) =>
        log({ level: 'error', message: 'Lifecycle event not published', clientId: event.clientId, error: describeError(error) }),
      ),
    );
  }

  function publishPacket(topic: string, payload: Buffer, { routed = false } = {}): Promise<void> {
    const packet: PublishPacket = { cmd: 'publish', topic, payload, qos: 1, dup: false, retain: false };
    if (routed) routedAlready.add(packet);
    return new Promise((resolve, reject) => aedes.publish(packet, (error) => (error ? reject(error) : resolve())));
  }

  /**
   * A client's message (or its will) through the rules; `callback` (aedes's authorizePublish callback) once every put
   * is in the stream, which lets aedes write the PUBACK and forward the message. A failed put calls back with the
   * error: aedes then writes no PUBACK and closes the connection (IoT Core would run the rule's error action).
   */
  function putBeforeAcknowledging(client: Client, packet: PublishPacket, callback: (error?: Error | null) => void): void {
    route(packet.topic, packet.payload, client.id).then(
      () => callback(null),
      (error: unknown) => {
        // A will is put after its connection closed; only a live publish ends the connection for this reason.
        if (client.connected && !client.closed) {
          connectionOf(client).reason ??= 'SERVER_ERROR';
          log({
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
   * The rules engine: every published message, from robots and from the cloud, is offered to the rules. The puts of
   * the matching rules are queued now, synchronously, behind the earlier ones of their partition keys; the promise
   * resolves when all of them are in the stream and rejects when one failed. A message a rule cannot take (not a
   * JSON object, no partition key) is logged and passed over, as IoT Core's rule would fail it.
   */
  function route(
    topic: string,
    payload: Buffer | Uint8Array | string,
    clientId: string | undefined,
    { lifecycle = false } = {},
  ): Promise<void> {
    if (topic.startsWith('$SYS/')) return Promise.resolve(); // aedes's own heartbeats
    const base = { payload, now: Date.now(), ...(clientId !== undefined ? { clientId } : {}) };
    const ingest = parseBasicIngestTopic(topic);
    if (ingest) {
      const rule = rulesByName.get(ingest.ruleName);
      if (!rule || ingest.topic === '') {
        log({
          level: 'warn',
          message: rule ? 'Basic Ingest message without a topic after the rule name: dropped' : `Basic Ingest message for unknown rule "${ingest.ruleName}": dropped`,
          topic,
          ...(clientId !== undefined ? { clientId } : {}),
        });
        return Promise.resolve();
      }
      return runRule(rule, { ...base, topic: ingest.topic }, topic, lifecycle);
    }
    const puts = rules
      .filter((rule) => topicMatches(rule.sql.topicFilter, topic))
      .map((rule) => runRule(rule, { ...base, topic }, topic, lifecycle));
    return Promise.all(puts).then(() => undefined);
  }

  function runRule(rule: CompiledRule, message: RuleMessage, publishedTopic: string, lifecycle: boolean): Promise<void> {
    const name = rule.action.rule.name;
    const result = applyRuleSql(rule.sql, message);
    const key = partitionKeyOf(rule.partitionKey, message);
    const problem = !result.ok ? result.problem : !key.ok ? key.problem : undefined;
    if (!result.ok || !key.ok) {
      log({ level: 'warn', message: `Rule ${name} not applied to ${publishedTopic}: ${problem}`, rule: name, topic: publishedTopic });
      return Promise.resolve();
    }
    return putInOrder(rule, { partitionKey: key.partitionKey, data: result.output }, publishedTopic, lifecycle);
  }

  /**
   * Starts the put once the previous put of the same partition key has settled, so one key's records reach the stream
   * in the order the broker received the messages (Kinesis orders a key's records only when the calls do not
   * overlap). A message's put whose predecessor failed fails without being tried: the failed message is not
   * acknowledged and comes again, and nothing of its key may land before it. A lifecycle event is put regardless: no
   * one sends it again, and it comes after the failure anyway.
   */
  function putInOrder(rule: CompiledRule, record: RuleRecord, topic: string, lifecycle: boolean): Promise<void> {
    const name = rule.action.rule.name;
    const { partitionKey } = record;
    const previous = putChains.get(partitionKey) ?? Promise.resolve();
    const put = previous.then(
      () => rule.action.put(record),
      (error: unknown) => {
        if (lifecycle) return rule.action.put(record);
        throw error instanceof EarlierPutFailed ? error : new EarlierPutFailed(partitionKey, error);
      },
    );
    const logged = put.catch((error: unknown) => {
      log({
        level: 'error',
        message: `Rule ${name} could not put the message into its stream`,
        rule: name,
        topic,
        partitionKey,
        error: describeError(error),
      });
      throw error;
    });
    putChains.set(partitionKey, logged);
    track(logged.catch(() => undefined).finally(() => {
      if (putChains.get(partitionKey) === logged) putChains.delete(partitionKey);
    }));
    return logged;
  }

  // ---- TLS: Node refuses certificates that do not chain to the CA or are out of their validity period.
  const sockets = new Set<Socket>();
  const server = tls.createServer({
    requestCert: true,
    rejectUnauthorized: true,
    ca: options.caCertificatePem,
    cert: options.serverCertificatePem,
    key: options.serverPrivateKeyPem,
    handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('secureConnection', (socket: tls.TLSSocket) => {
    if (stopping) {
      socket.destroy();
      return;
    }
    const client = aedes.handle(socket);
    connections.set(client, { ipAddress: socket.remoteAddress?.replace(/^::ffff:/, '') });
    refuseOversizedPackets(client, () => {
      connectionOf(client).reason ??= 'CLIENT_ERROR';
      log({ level: 'warn', message: `A packet over ${MAX_REMAINING_LENGTH} bytes (IoT Core's payload limit is ${IOT_MAX_PAYLOAD_BYTES}): disconnecting`, clientId: client.id });
    });
    socket.once('close', () => ended(client));
  });
  server.on('tlsClientError', (error: NodeJS.ErrnoException, socket: tls.TLSSocket) => {
    // Node refuses a bad client certificate by closing the socket after the handshake (no alert under TLS 1.3), so
    // the error itself only says "socket hang up"; the verification failure is on the socket.
    const refusal = (socket as tls.TLSSocket & { authorizationError?: string }).authorizationError;
    log({
      level: refusal ? 'warn' : 'debug',
      message: refusal ? `TLS connection refused: client certificate ${refusal}` : `TLS handshake failed: ${error.message}`,
      code: refusal ?? error.code,
      remoteAddress: socket.remoteAddress,
    });
  });
  server.on('error', (error: Error) => log({ level: 'error', message: 'TLS server error', error: error.message }));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host ?? '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  }).catch(async (error: unknown) => {
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    throw error;
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : options.port;
  log({ level: 'info', message: 'IoT broker listening', port, rules: rules.map((rule) => rule.action.rule.name) });

  const idle = async (): Promise<void> => {
    while (pending.size > 0) await Promise.allSettled([...pending]);
  };

  let stopped: Promise<void> | undefined;
  const stop = async (): Promise<void> => {
    stopping = true;
    const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const client of live.values()) connectionOf(client).reason ??= 'SERVER_INITIATED_DISCONNECT';
    // Every announced connection, those still closing after a takeover included, ends here, so that its
    // `disconnected` goes out before the broker closes.
    const everyone = [...announced];
    await Promise.all(everyone.map((client) => new Promise<void>((resolve) => client.close(() => resolve()))));
    for (const client of everyone) ended(client);
    // The `disconnected` events must be through the broker before it closes.
    await idle();
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    for (const socket of sockets) socket.destroy();
    await serverClosed;
    await idle();
    await waitForClockPast(versions.highest(), log);
    log({ level: 'info', message: 'IoT broker stopped', port });
  };

  return {
    port,
    connectedThings: () => [...live.keys()].sort(),
    idle,
    async publish(topic, payload) {
      if (stopping) throw new Error(`Cannot publish to ${topic}: the broker is stopped`);
      if (topic.length === 0 || topic.includes('+') || topic.includes('#')) {
        throw new Error(`Cannot publish to "${topic}": a topic is not empty and has no + or # wildcard`);
      }
      await publishPacket(topic, payloadBytes(payload));
    },
    stop: () => (stopped ??= stop()),
  };
}

function compileRules(actions: readonly RuleAction[]): CompiledRule[] {
  const seen = new Set<string>();
  return actions.map((action) => {
    const name = action.rule.name;
    if (!/^[A-Za-z0-9_]+$/.test(name)) throw new Error(`Rule "${name}": IoT rule names allow only letters, digits and underscores`);
    if (seen.has(name)) throw new Error(`Rule ${name} is given twice`);
    seen.add(name);
    return { action, sql: parseRuleSql(action.rule), partitionKey: parsePartitionKey(action.rule) };
  });
}

/** What makes a client's PUBLISH one IoT Core refuses, or undefined when it is within its limits. */
function beyondIotLimits(packet: PublishPacket): string | undefined {
  if (packet.qos > IOT_MAX_QOS) return `at QoS ${packet.qos} (IoT Core supports QoS 0 and 1)`;
  const bytes = typeof packet.payload === 'string' ? Buffer.byteLength(packet.payload) : packet.payload.length;
  if (bytes > IOT_MAX_PAYLOAD_BYTES) return `a ${bytes}-byte payload (IoT Core's limit is ${IOT_MAX_PAYLOAD_BYTES} bytes)`;
  return undefined;
}

/**
 * Closes the connection as soon as a packet announces a remaining length over MAX_REMAINING_LENGTH, instead of
 * buffering megabytes only to refuse them. aedes (1.2) has no packet size limit; this wraps its mqtt-packet parser's
 * length step (`_parseLength`), and does nothing if that ever changes (authorizePublish still refuses the payload).
 */
function refuseOversizedPackets(client: Client, onRefused: () => void): void {
  type Parser = { packet: { length: number }; _parseLength?: () => boolean; _emitError?: (error: Error) => void };
  const parser = (client as unknown as { _parser?: Parser })._parser;
  const parseLength = parser?._parseLength;
  if (!parser || typeof parseLength !== 'function' || typeof parser._emitError !== 'function') return;
  parser._parseLength = function (this: Parser): boolean {
    const complete = parseLength.call(this);
    if (complete && this.packet.length > MAX_REMAINING_LENGTH) {
      onRefused();
      this._emitError!(new Error(`packet of ${this.packet.length} bytes is over the broker's limit`));
      return false;
    }
    return complete;
  };
}

/** A put not tried because an earlier put of its partition key failed. */
class EarlierPutFailed extends Error {
  override readonly name = 'EarlierPutFailed';
  constructor(partitionKey: string, cause: unknown) {
    super(`an earlier message with partition key "${partitionKey}" was not put (${describeError(cause)})`, { cause });
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
async function waitForClockPast(version: number, log: (entry: BrokerLogEntry) => void): Promise<void> {
  const deadline = Date.now() + MAX_VERSION_CLOCK_WAIT_MS;
  while (Math.floor(Date.now() / 1000) <= version) {
    if (Date.now() >= deadline) {
      log({ level: 'warn', message: 'versionNumbers ran ahead of the clock: a broker started now may repeat some', version });
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(1000 - (Date.now() % 1000) + 5, 250)));
  }
}

function defaultLog(entry: BrokerLogEntry): void {
  if (entry.level !== 'debug') console.error(JSON.stringify({ component: 'iot-broker', ...entry }));
}
