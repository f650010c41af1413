import { WebSocket, type RawData } from 'ws';
import { errorFields, type GatewayLog } from '../gateway-support.js';
import type { RequestOrigin } from './events.js';

/**
 * The open connections of the WebSocket gateway and their lifecycle after `$connect` admitted them: API Gateway's
 * idle and maximum-duration quotas, closing by the gateway itself, and the single `$disconnect` of each.
 *
 * Invariants:
 * - a connection is in the registry from its acceptance until its disconnection, never before or after;
 * - `disconnect` runs its `onDisconnect` exactly once per connection (the `disconnected` flag), whoever closed it,
 *   and clears the connection's timers;
 * - when the gateway closed the connection (idle, too old, deleted, stopping), that code and reason are the
 *   `$disconnect` status, not what the socket reported; a connection is closed by the gateway at most once;
 * - every message resets the idle timer and `lastActiveAt` before it is routed;
 * - `stop` leaves no connection open and resolves only after every pending `onDisconnect` settled.
 */

export const GOING_AWAY = 1001;

export interface Connection extends RequestOrigin {
  readonly socket: WebSocket;
  lastActiveAt: number;
  readonly headers: Record<string, string>;
  readonly multiValueHeaders: Record<string, string[]>;
  readonly timers: NodeJS.Timeout[];
  /** Set when the gateway itself closed the connection (idle, too old, deleted, stopping). */
  closedBy?: { code: number; reason: string };
  disconnected: boolean;
}

/** A connection `$connect` admitted, before it has a socket. */
export type AdmittedConnection = Omit<Connection, 'socket'>;

export interface ConnectionInfo {
  readonly connectionId: string;
  readonly connectedAt: Date;
  readonly lastActiveAt: Date;
  readonly sourceIp: string;
  readonly userAgent: string;
}

export interface ConnectionRegistryOptions {
  readonly idleTimeoutMs: number;
  readonly maxDurationMs: number;
  readonly log: GatewayLog;
  /** Runs once per connection when it is gone (the `$disconnect` route); its failures are the caller's to log. */
  readonly onDisconnect: (connection: Connection, statusCode: number, reason: string) => Promise<void>;
}

export class ConnectionRegistry {
  private readonly open = new Map<string, Connection>();
  private readonly pendingDisconnects = new Set<Promise<void>>();

  constructor(private readonly options: ConnectionRegistryOptions) {}

  get size(): number {
    return this.open.size;
  }

  get(connectionId: string): Connection | undefined {
    return this.open.get(connectionId);
  }

  infos(): ConnectionInfo[] {
    return [...this.open.values()].map((connection) => ({
      connectionId: connection.id,
      connectedAt: new Date(connection.connectedAt),
      lastActiveAt: new Date(connection.lastActiveAt),
      sourceIp: connection.sourceIp,
      userAgent: connection.userAgent,
    }));
  }

  /** Registers a connection with its socket open, starts its quotas and hands each message to `onMessage`. */
  accept(connection: Connection, onMessage: (connection: Connection, data: RawData, isBinary: boolean) => Promise<void>): void {
    const { socket, id } = connection;
    const { log } = this.options;
    this.open.set(id, connection);
    log({ level: 'info', message: 'WebSocket connected', connectionId: id, sourceIp: connection.sourceIp });
    const idle = setTimeout(() => this.closeBy(connection, GOING_AWAY, 'Going away'), this.options.idleTimeoutMs);
    const tooOld = setTimeout(() => this.closeBy(connection, GOING_AWAY, 'Going away'), this.options.maxDurationMs);
    idle.unref();
    tooOld.unref();
    connection.timers.push(idle, tooOld);
    socket.on('message', (data, isBinary) => {
      connection.lastActiveAt = Date.now();
      idle.refresh();
      onMessage(connection, data, isBinary).catch((error: unknown) =>
        log({ level: 'error', message: 'WebSocket message handling failed', connectionId: id, ...errorFields(error) }),
      );
    });
    // ws reports protocol errors (such as a message over maxPayload, closed with 1009) here before it closes.
    socket.on('error', (error) => log({ level: 'info', message: 'WebSocket protocol error', connectionId: id, error: error.message }));
    socket.on('close', (code, reason) => this.disconnect(connection, code, reason.toString('utf8')));
  }

  /**
   * `$connect` admitted a connection whose client had already left (or the gateway is stopping): API Gateway
   * disconnects it, so it gets its `$disconnect` without ever being open.
   */
  abandon(connection: AdmittedConnection, code: number, reason: string): void {
    this.disconnect({ ...connection, socket: null as unknown as WebSocket }, code, reason);
  }

  closeBy(connection: Connection, code: number, reason: string): void {
    if (connection.disconnected || connection.closedBy) return;
    connection.closedBy = { code, reason };
    this.options.log({ level: 'info', message: 'Closing a WebSocket connection', connectionId: connection.id, code, reason });
    connection.socket.close(code, reason);
    // A client that never answers the close handshake is cut off (ws itself waits 30 s).
    setTimeout(() => connection.socket.terminate(), 5_000).unref();
  }

  /** Sends a text frame if the socket is still open (a reply on the connection's own socket). */
  reply(connection: Connection, text: string): void {
    if (connection.socket.readyState === WebSocket.OPEN) connection.socket.send(text);
  }

  /** Closes every connection (1001), cuts off those that do not answer, and waits for every `$disconnect`. */
  async stop(): Promise<void> {
    for (const connection of this.open.values()) this.closeBy(connection, GOING_AWAY, 'Going away');
    const deadline = Date.now() + 2_000;
    while (this.open.size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    for (const connection of this.open.values()) connection.socket.terminate();
    while (this.open.size > 0 && Date.now() < deadline + 1_000) await new Promise((resolve) => setTimeout(resolve, 20));
    await Promise.allSettled([...this.pendingDisconnects]);
  }

  private disconnect(connection: Connection, code: number, reason: string): void {
    if (connection.disconnected) return;
    connection.disconnected = true;
    for (const timer of connection.timers) clearTimeout(timer);
    this.open.delete(connection.id);
    const statusCode = connection.closedBy?.code ?? code;
    const statusReason = connection.closedBy?.reason ?? reason;
    this.options.log({ level: 'info', message: 'WebSocket disconnected', connectionId: connection.id, disconnectStatusCode: statusCode });
    const pending = this.options
      .onDisconnect(connection, statusCode, statusReason)
      .finally(() => this.pendingDisconnects.delete(pending));
    this.pendingDisconnects.add(pending);
  }
}
