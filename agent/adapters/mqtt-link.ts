import { EventEmitter } from 'node:events';
import { iot, mqtt } from 'aws-iot-device-sdk-v2';
import { backoffDelay, type BackoffOptions } from '../core/backoff.js';
import {
  afterFirstConnectionFailure,
  connectionCheck,
  diagnoseConnectionFailure,
  exitCodeFor,
  type ConnectionProblem,
} from '../core/connection-failure.js';
import { silentLog, type Logger } from './json-log.js';
import { describeError } from '../../lib/describe-error.js';

/**
 * The agent's one connection to AWS IoT Core: MQTT 3.1.1 over mTLS through AWS's own client (aws-crt, the C MQTT
 * stack behind aws-iot-device-sdk-v2), client id = thing name, one certificate per robot.
 *
 * Connecting: the SDK does not retry a *first* connection that fails (a Pi that boots before its Wi-Fi is up), so
 * `start()` retries it with exponential backoff and full jitter, logging every failure with what to check
 * (agent/core/connection-failure.ts). With `firstConnectionBudgetSeconds`, it gives up once that long has passed
 * without a CONNACK (at the first failure after it: an attempt under way is not cut short), and at once when the TLS
 * context cannot even be built from the files: `start()` then rejects with a `LinkGaveUpError` saying what is wrong
 * and which exit code fits. Without a budget it retries forever. Once connected, the SDK's own reconnect (between
 * `reconnect.minSeconds` and `maxSeconds`, doubling) handles every later drop, for ever.
 *
 * Clean session: **true**. A persistent session would make IoT Core queue QoS 1 commands for up to an hour while the
 * robot is offline and replay them on reconnect, so a stale "report now" would be answered long after anyone waited
 * for it, and the queued messages are billed. Nothing the agent needs survives in a broker session anyway: its events
 * wait in its own on-disk queue, telemetry is a latest-value signal, and the link subscribes again itself after every
 * connection that comes back without a session (which, with a clean session, is every one).
 *
 * Nothing happens on import; `stop()` sends a clean MQTT DISCONNECT (so IoT Core reports
 * `clientInitiatedDisconnect: true` and no will fires) and releases the native connection. Both are idempotent.
 */

export type QoS = 0 | 1;
export type MessageHandler = (topic: string, payload: Buffer) => void;

export interface LinkConnection {
  /** Whether the broker kept a session from an earlier connection (never, with a clean session). */
  readonly sessionPresent: boolean;
}

/** What the link tells the runtime: first connection, an unexpected drop, and each reconnection after a drop. */
export interface LinkEvents {
  connected: [LinkConnection];
  interrupted: [Error];
  resumed: [LinkConnection];
}

/** The link as the agent runtime sees it; tests substitute a fake. */
export interface Link {
  readonly isConnected: boolean;
  /**
   * Connects (retrying a failed first connection); resolves once connected, rejects if stopped first or when the
   * link gives up on the first connection (`LinkGaveUpError`).
   */
  start(): Promise<void>;
  /** Resolves when the broker acknowledged (QoS 1) or the packet was written (QoS 0); rejects while disconnected. */
  publish(topic: string, payload: string | Uint8Array, qos: QoS): Promise<void>;
  /**
   * Registers `handler` for `filter` and subscribes now if connected (resolving on the SUBACK), else at the next
   * connection (resolving at once). The subscription is renewed after every reconnection without a session.
   */
  subscribe(filter: string, handler: MessageHandler): Promise<void>;
  on<E extends keyof LinkEvents>(event: E, listener: (...args: LinkEvents[E]) => void): unknown;
  off<E extends keyof LinkEvents>(event: E, listener: (...args: LinkEvents[E]) => void): unknown;
  /** Clean DISCONNECT, then releases the native connection. Idempotent. */
  stop(): Promise<void>;
}

export class LinkError extends Error {
  override readonly name: string = 'LinkError';
}

/** The first connection could not be made within its budget, or cannot be made with these files at all. */
export class LinkGaveUpError extends LinkError {
  override readonly name = 'LinkGaveUpError';
  /** The process exit code that fits (agent/core/connection-failure.ts: 78 setup, 69 unreachable). */
  readonly exitCode: number;
  constructor(
    readonly problem: ConnectionProblem,
    /** What to check, naming the config fields. */
    readonly check: string,
    readonly attempts: number,
    options: { cause: unknown },
  ) {
    super(`cannot connect (${problem}) after ${attempts} attempt(s): ${describeError(options.cause)}; ${check}`, options);
    this.exitCode = exitCodeFor(problem);
  }
}

/** The operation needs a connection the link does not have right now (or any more). */
export class LinkNotConnectedError extends LinkError {
  override readonly name = 'LinkNotConnectedError';
}

export interface MqttLinkOptions {
  readonly endpoint: string;
  readonly port: number;
  /** = the thing name: IoT Core's thing policy admits no other. */
  readonly clientId: string;
  readonly certificateFile: string;
  readonly privateKeyFile: string;
  /** Default: the system's trust store (which has Amazon's roots). */
  readonly caFile?: string | undefined;
  readonly keepAliveSeconds: number;
  readonly reconnect: { readonly minSeconds: number; readonly maxSeconds: number };
  /** How long a QoS 1 publish or a subscribe may wait for its acknowledgement. Default 30 s. */
  readonly operationTimeoutMs?: number;
  /** Give up on the first connection after this long without a CONNACK. Default: retry forever. */
  readonly firstConnectionBudgetSeconds?: number | undefined;
}

export interface MqttLinkDependencies {
  readonly log?: Logger;
  /** Random source of the first connection's backoff jitter. */
  readonly random?: () => number;
  /** Monotonic milliseconds, for the first connection's budget. Default performance.now. */
  readonly now?: () => number;
}

const DEFAULT_OPERATION_TIMEOUT_MS = 30_000;
/** aws-crt wants an answer to PINGREQ within this; it must stay below the keep-alive or the C layer aborts. */
const PING_TIMEOUT_MS = 3_000;
/** SUBACK return code for a refused subscription (MQTT 3.1.1 §3.9.3). */
const SUBACK_FAILURE = 0x80;

export class MqttLink extends EventEmitter<LinkEvents> implements Link {
  private readonly log: Logger;
  private readonly random: () => number;
  private readonly now: () => number;
  private readonly handlers = new Map<string, MessageHandler>();
  private connection: mqtt.MqttClientConnection | undefined;
  private connected = false;
  private everConnected = false;
  /** The native connection has been up at least once: it must be ended with DISCONNECT, not just released. */
  private established = false;
  private starting: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;
  /** The pending wait between first-connection attempts, so stop() can cut it short. */
  private retryWait: { timer: NodeJS.Timeout; wake: () => void } | undefined;

  constructor(
    private readonly options: MqttLinkOptions,
    dependencies: MqttLinkDependencies = {},
  ) {
    super();
    const { keepAliveSeconds, reconnect } = options;
    if (!Number.isInteger(keepAliveSeconds) || keepAliveSeconds < 1 || keepAliveSeconds > 65_535) {
      throw new RangeError(`mqtt link: keepAliveSeconds must be an integer 1–65535, got ${keepAliveSeconds}`);
    }
    if (reconnect.minSeconds < 1 || reconnect.maxSeconds < reconnect.minSeconds) {
      throw new RangeError('mqtt link: reconnect needs 1 ≤ minSeconds ≤ maxSeconds');
    }
    const budget = options.firstConnectionBudgetSeconds;
    if (budget !== undefined && !(Number.isFinite(budget) && budget > 0)) {
      throw new RangeError(`mqtt link: firstConnectionBudgetSeconds must be positive, got ${budget}`);
    }
    this.log = dependencies.log ?? silentLog;
    this.random = dependencies.random ?? Math.random;
    this.now = dependencies.now ?? (() => performance.now());
  }

  get isConnected(): boolean {
    return this.connected;
  }

  start(): Promise<void> {
    if (this.stopping) return Promise.reject(new LinkNotConnectedError('the MQTT link was stopped'));
    this.starting ??= this.connectFirstTime();
    return this.starting;
  }

  async publish(topic: string, payload: string | Uint8Array, qos: QoS): Promise<void> {
    const connection = this.connection;
    if (!connection || !this.connected || this.stopping) {
      // aws-crt would hold the packet until the link is back; the runtime decides what deserves to wait (the queue).
      throw new LinkNotConnectedError(`not connected: cannot publish to ${topic}`);
    }
    try {
      await connection.publish(topic, payload, qos === 1 ? mqtt.QoS.AtLeastOnce : mqtt.QoS.AtMostOnce);
    } catch (error) {
      throw new LinkError(`publish to ${topic} failed: ${describeError(error)}`, { cause: error });
    }
  }

  async subscribe(filter: string, handler: MessageHandler): Promise<void> {
    if (this.stopping) throw new LinkNotConnectedError(`the MQTT link was stopped: cannot subscribe to ${filter}`);
    this.handlers.set(filter, handler);
    if (this.connected) await this.sendSubscribe(filter);
  }

  stop(): Promise<void> {
    this.stopping ??= this.shutDown();
    return this.stopping;
  }

  private async connectFirstTime(): Promise<void> {
    const { endpoint, port } = this.options;
    const startedAt = this.now();
    const budgetSeconds = this.options.firstConnectionBudgetSeconds;
    const budgetMs = budgetSeconds === undefined ? undefined : budgetSeconds * 1000;
    let connection: mqtt.MqttClientConnection;
    try {
      connection = this.createConnection();
    } catch (error) {
      // The TLS context is built from the files alone: nothing a retry could change.
      const check = connectionCheck('credentials', this.options);
      this.log.error('cannot connect: the TLS setup failed; giving up', { endpoint, port, problem: 'credentials', check, error: toError(error) });
      throw new LinkGaveUpError('credentials', check, 0, { cause: error });
    }
    this.connection = connection;
    const backoff: BackoffOptions = {
      baseMs: this.options.reconnect.minSeconds * 1000,
      capMs: this.options.reconnect.maxSeconds * 1000,
    };
    for (let attempt = 0; ; attempt += 1) {
      if (this.stopping) throw new LinkNotConnectedError('the MQTT link was stopped before it connected');
      try {
        this.log.info('connecting', { endpoint: this.options.endpoint, port: this.options.port, attempt: attempt + 1 });
        const sessionPresent = await connection.connect();
        this.established = true;
        if (this.stopping) throw new LinkNotConnectedError('the MQTT link was stopped while it connected');
        // The promise and the 'connection_success' event both report it, in no guaranteed order: linkUp dedupes.
        this.linkUp(sessionPresent);
        return;
      } catch (error) {
        if (this.stopping) {
          throw error instanceof LinkNotConnectedError ? error : new LinkNotConnectedError('the MQTT link was stopped before it connected');
        }
        const cause = toError(error);
        const { problem, check } = diagnoseConnectionFailure(cause.message, this.options);
        const next = afterFirstConnectionFailure({
          problem,
          startedAt,
          now: this.now(),
          budgetMs,
          delayMs: backoffDelay(attempt, backoff, this.random),
        });
        if (next.giveUp) {
          this.log.error('connection failed; giving up', { endpoint, port, attempt: attempt + 1, problem, check, budgetSeconds, error: cause });
          this.release(connection);
          throw new LinkGaveUpError(problem, check, attempt + 1, { cause });
        }
        this.log.warn('connection failed; retrying', {
          endpoint,
          port,
          attempt: attempt + 1,
          problem,
          check,
          error: cause,
          nextDelayMs: next.waitMs,
        });
        await this.sleep(next.waitMs);
      }
    }
  }

  private createConnection(): mqtt.MqttClientConnection {
    const { options } = this;
    const builder = iot.AwsIotMqttConnectionConfigBuilder.new_mtls_builder_from_path(
      options.certificateFile,
      options.privateKeyFile,
    )
      .with_endpoint(options.endpoint)
      .with_port(options.port)
      .with_client_id(options.clientId)
      .with_clean_session(true)
      .with_keep_alive_seconds(options.keepAliveSeconds)
      .with_ping_timeout_ms(Math.min(PING_TIMEOUT_MS, (options.keepAliveSeconds * 1000) / 2))
      .with_protocol_operation_timeout_ms(options.operationTimeoutMs ?? DEFAULT_OPERATION_TIMEOUT_MS)
      .with_reconnect_min_sec(options.reconnect.minSeconds)
      .with_reconnect_max_sec(options.reconnect.maxSeconds);
    if (options.caFile !== undefined) builder.with_certificate_authority_from_path(undefined, options.caFile);
    const connection = new mqtt.MqttClient().new_connection(builder.build());

    connection.on('connection_success', ({ session_present: sessionPresent }) => this.linkUp(sessionPresent));
    connection.on('interrupt', (error) => {
      this.connected = false;
      const cause = toError(error);
      this.log.warn('connection lost; the SDK reconnects', { error: cause });
      this.emit('interrupted', cause);
    });
    connection.on('connection_failure', ({ error }) => {
      // The first connection's failures are logged by the retry loop with their next delay.
      if (this.everConnected && !this.stopping) this.log.warn('reconnection failed', { error: toError(error) });
    });
    connection.on('error', (error) => {
      if (!this.stopping) this.log.debug('mqtt error', { error: toError(error) });
    });
    return connection;
  }

  private linkUp(sessionPresent: boolean): void {
    this.established = true;
    if (this.connected || this.stopping) return;
    this.connected = true;
    const first = !this.everConnected;
    this.everConnected = true;
    this.log.info(first ? 'connected' : 'reconnected', { sessionPresent });
    // Subscriptions first: a command sent right after the runtime hears "connected" must find them in place.
    if (!sessionPresent) this.resubscribeAll();
    this.emit(first ? 'connected' : 'resumed', { sessionPresent });
  }

  private resubscribeAll(): void {
    for (const filter of this.handlers.keys()) {
      this.sendSubscribe(filter).catch((error: unknown) => {
        this.log.error('subscription failed', { filter, error: toError(error) });
      });
    }
  }

  private async sendSubscribe(filter: string): Promise<void> {
    const connection = this.connection;
    if (!connection) throw new LinkNotConnectedError(`not connected: cannot subscribe to ${filter}`);
    let granted;
    try {
      granted = await connection.subscribe(filter, mqtt.QoS.AtLeastOnce, (topic, payload) => this.deliver(filter, topic, payload));
    } catch (error) {
      throw new LinkError(`subscribe to ${filter} failed: ${describeError(error)}`, { cause: error });
    }
    if (Number(granted.qos) === SUBACK_FAILURE) throw new LinkError(`the broker refused the subscription to ${filter}`);
    this.log.debug('subscribed', { filter, qos: granted.qos });
  }

  private deliver(filter: string, topic: string, payload: ArrayBuffer): void {
    const handler = this.handlers.get(filter);
    if (!handler || this.stopping) return;
    try {
      handler(topic, Buffer.from(payload));
    } catch (error) {
      // A handler bug must not unwind into the native callback (it would take the process down).
      this.log.error('message handler threw', { topic, error: toError(error) });
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.retryWait = undefined;
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.retryWait = { timer, wake };
    });
  }

  private async shutDown(): Promise<void> {
    this.retryWait?.wake();
    // A connection attempt under way settles within the socket/CONNACK timeouts; it must not be torn down mid-flight.
    await this.starting?.catch(() => undefined);
    const connection = this.connection;
    this.connection = undefined;
    const wasConnected = this.connected;
    this.connected = false;
    if (!connection) return;
    if (this.established) {
      try {
        // Also ends the SDK's reconnect loop if the link is down; the native connection is released on 'closed'.
        await connection.disconnect();
        this.log.info('disconnected', { clean: wasConnected });
      } catch (error) {
        this.log.warn('disconnect failed', { error: toError(error) });
      }
    } else {
      this.release(connection);
    }
  }

  /** Never connected: there is nothing to DISCONNECT, and aws-crt refuses to; release the native handle directly. */
  private release(connection: mqtt.MqttClientConnection): void {
    if (this.connection === connection) this.connection = undefined;
    (connection as unknown as { close?: () => void }).close?.();
  }
}

/** aws-crt rejects with plain strings or CrtError objects; the log wants an Error with a message. */
function toError(error: unknown): Error {
  if (error instanceof Error) return error;
  return new LinkError(describeError(error));
}

