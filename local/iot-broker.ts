import { createHash, randomUUID } from 'node:crypto';
import type { Socket } from 'node:net';
import * as tls from 'node:tls';
import { Aedes, type AedesPublishPacket, type Client, type ConnectPacket, type PublishPacket } from 'aedes';
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
import { type ParsedRuleSql, type RuleMessage, applyRuleSql, parseBasicIngestTopic, parseRuleSql, topicMatches } from './topic-rules.js';

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
 * - topic rules (the SQL subset in local/topic-rules.ts) and Basic Ingest, invoking the handlers asynchronously with
 *   Lambda's two retries of an asynchronous invoke.
 */

export interface RuleInvocation {
  readonly rule: TopicRule;
  readonly invoke: (payload: unknown) => Promise<void>;
}

export type BrokerLogEntry = { level: 'debug' | 'info' | 'warn' | 'error'; message: string; [k: string]: unknown };

export interface IotBrokerOptions {
  readonly port: number; // 0 = any free port
  readonly host?: string; // default '127.0.0.1'
  readonly caCertificatePem: string; // client certs must chain to it
  readonly serverCertificatePem: string;
  readonly serverPrivateKeyPem: string;
  readonly registry: { isAttached(thingName: string, certificateId: string): Promise<boolean> };
  readonly rules: readonly RuleInvocation[];
  /** IoT Core raises keep-alives below 30 s to 30 s; tests set this lower (e.g. 1). Default 30. */
  readonly minKeepAliveSeconds?: number;
  /** Waits before the retries of a failed rule invocation. Default [1000, 2000], as Lambda's asynchronous invoke. */
  readonly invokeRetryDelaysMs?: readonly number[];
  readonly log?: (entry: BrokerLogEntry) => void;
}

export interface IotBroker {
  readonly port: number;
  connectedThings(): string[];
  /** Resolves when every rule invocation started so far has finished (tests/benchmarks wait on it). */
  idle(): Promise<void>;
  /** Publishes a message as the cloud would (e.g. a command to `cmd/heartbeat/<thing>/report-now`), QoS 1. */
  publish(topic: string, payload: unknown): Promise<void>;
  /** Disconnects everyone (lifecycle `disconnected` with SERVER_INITIATED_DISCONNECT), waits for rule invocations, closes. */
  stop(): Promise<void>;
}

/** IoT Core's keep-alive range: a request of 0 (none) gets the maximum. */
const MAX_KEEP_ALIVE_SECONDS = 1200;
const DEFAULT_RETRY_DELAYS_MS = [1000, 2000] as const;
/** A TLS client has this long to finish its handshake. */
const HANDSHAKE_TIMEOUT_MS = 10_000;
/** stop() waits at most this long for the clock to pass the highest versionNumber issued (see LifecycleVersions). */
const MAX_VERSION_CLOCK_WAIT_MS = 5_000;
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
}

interface CompiledRule {
  readonly invocation: RuleInvocation;
  readonly sql: ParsedRuleSql;
}

export async function startIotBroker(options: IotBrokerOptions): Promise<IotBroker> {
  const log = options.log ?? defaultLog;
  const minKeepAlive = options.minKeepAliveSeconds ?? 30;
  if (!Number.isInteger(minKeepAlive) || minKeepAlive < 1 || minKeepAlive > MAX_KEEP_ALIVE_SECONDS) {
    throw new Error(`minKeepAliveSeconds must be a whole number of seconds from 1 to ${MAX_KEEP_ALIVE_SECONDS}, got ${minKeepAlive}`);
  }
  const retryDelays = options.invokeRetryDelaysMs ?? DEFAULT_RETRY_DELAYS_MS;
  const rules = compileRules(options.rules);
  const rulesByName = new Map(rules.map((rule) => [rule.invocation.rule.name, rule]));

  const connections = new WeakMap<Client, Connection>();
  const live = new Map<string, Client>();
  const versions = new LifecycleVersions();
  /** Rule invocations (with their retries) and lifecycle publishes under way. */
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
          log({ level: 'error', message: 'The thing registry could not be read', error: errorMessage(error) });
          refuse('the thing registry could not be read', { certificateId }, SERVER_UNAVAILABLE);
        },
      );
    },
    authorizePublish(client, packet, callback) {
      if (!client || isAllowed('Publish', client.id, packet.topic)) return callback(null);
      // A will is checked after the connection closed; only a live publish ends the connection for this reason.
      if (client.connected && !client.closed) {
        connectionOf(client).reason ??= 'FORBIDDEN_ACCESS';
        log({ level: 'warn', message: 'Publish not allowed by the thing policy: disconnecting', clientId: client.id, topic: packet.topic });
      }
      callback(new Error(`${client.id} may not publish to ${packet.topic}`));
    },
    authorizeSubscribe(client, subscription, callback) {
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
      callback(null);
      route(packet, client);
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
  aedes.on('clientReady', (client) => {
    const connection = connections.get(client);
    if (client.closed || !connection?.certificateId) return;
    const session: PresenceSession = {
      clientId: client.id,
      sessionIdentifier: randomUUID(),
      principalIdentifier: connection.certificateId,
      ...(connection.ipAddress ? { ipAddress: connection.ipAddress } : {}),
      versionNumber: versions.next(client.id),
    };
    connection.session = session;
    live.set(client.id, client);
    log({ level: 'info', message: 'Robot connected', clientId: client.id, versionNumber: session.versionNumber });
    publishLifecycle(connectedEvent(session, Date.now()));
  });
  aedes.on('clientDisconnect', (client) => {
    const connection = connections.get(client);
    if (!connection?.session) return;
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
  });
  await aedes.listen();

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
    track(
      publishPacket(presenceTopicOf(event), Buffer.from(JSON.stringify(event))).catch((error: unknown) =>
        log({ level: 'error', message: 'Lifecycle event not published', clientId: event.clientId, error: errorMessage(error) }),
      ),
    );
  }

  function publishPacket(topic: string, payload: Buffer): Promise<void> {
    const packet: PublishPacket = { cmd: 'publish', topic, payload, qos: 1, dup: false, retain: false };
    return new Promise((resolve, reject) => aedes.publish(packet, (error) => (error ? reject(error) : resolve())));
  }

  /** The rules engine: every published message, from robots and from the cloud, is offered to the rules. */
  function route(packet: AedesPublishPacket, client: Client | null): void {
    const topic = packet.topic;
    if (topic.startsWith('$SYS/')) return; // aedes's own heartbeats
    const base = { payload: packet.payload, now: Date.now(), ...(client ? { clientId: client.id } : {}) };
    const ingest = parseBasicIngestTopic(topic);
    if (ingest) {
      const rule = rulesByName.get(ingest.ruleName);
      if (!rule || ingest.topic === '') {
        log({
          level: 'warn',
          message: rule ? 'Basic Ingest message without a topic after the rule name: dropped' : `Basic Ingest message for unknown rule "${ingest.ruleName}": dropped`,
          topic,
          ...(client ? { clientId: client.id } : {}),
        });
        return;
      }
      runRule(rule, { ...base, topic: ingest.topic }, topic);
      return;
    }
    for (const rule of rules) {
      if (topicMatches(rule.sql.topicFilter, topic)) runRule(rule, { ...base, topic }, topic);
    }
  }

  function runRule(rule: CompiledRule, message: RuleMessage, publishedTopic: string): void {
    const name = rule.invocation.rule.name;
    const result = applyRuleSql(rule.sql, message);
    if (!result.ok) {
      log({ level: 'warn', message: `Rule ${name} not invoked for ${publishedTopic}: ${result.problem}`, rule: name, topic: publishedTopic });
      return;
    }
    track(invokeWithRetries(rule.invocation, result.output, publishedTopic));
  }

  async function invokeWithRetries(invocation: RuleInvocation, output: Record<string, unknown>, topic: string): Promise<void> {
    const name = invocation.rule.name;
    for (let attempt = 0; ; attempt++) {
      try {
        // A copy per attempt: a handler that changes its event must not change the retry's.
        await Promise.resolve().then(() => invocation.invoke(structuredClone(output)));
        return;
      } catch (error) {
        const delay = retryDelays[attempt];
        if (delay === undefined) {
          log({ level: 'error', message: `Rule ${name} failed after ${attempt + 1} attempts; message dropped`, rule: name, topic, error: errorMessage(error) });
          return;
        }
        log({ level: 'warn', message: `Rule ${name} failed; retrying in ${delay} ms`, rule: name, topic, error: errorMessage(error) });
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
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
  log({ level: 'info', message: 'IoT broker listening', port, rules: rules.map((rule) => rule.invocation.rule.name) });

  const idle = async (): Promise<void> => {
    while (pending.size > 0) await Promise.allSettled([...pending]);
  };

  let stopped: Promise<void> | undefined;
  const stop = async (): Promise<void> => {
    stopping = true;
    const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
    const everyone = [...live.values()];
    for (const client of everyone) connectionOf(client).reason ??= 'SERVER_INITIATED_DISCONNECT';
    await Promise.all(everyone.map((client) => new Promise<void>((resolve) => client.close(() => resolve()))));
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

function compileRules(invocations: readonly RuleInvocation[]): CompiledRule[] {
  const seen = new Set<string>();
  return invocations.map((invocation) => {
    const name = invocation.rule.name;
    if (!/^[A-Za-z0-9_]+$/.test(name)) throw new Error(`Rule "${name}": IoT rule names allow only letters, digits and underscores`);
    if (seen.has(name)) throw new Error(`Rule ${name} is given twice`);
    seen.add(name);
    return { invocation, sql: parseRuleSql(invocation.rule) };
  });
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

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function defaultLog(entry: BrokerLogEntry): void {
  if (entry.level !== 'debug') console.error(JSON.stringify({ component: 'iot-broker', ...entry }));
}
