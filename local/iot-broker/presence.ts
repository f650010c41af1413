import { randomUUID } from 'node:crypto';
import type { Client } from 'aedes';
import type { ConnectedLifecycleEvent, DisconnectedLifecycleEvent } from '../../schemas/lifecycle.js';
import { type DisconnectReason, LifecycleVersions, type PresenceSession, connectedEvent, disconnectedEvent } from '../presence-events.js';
import type { BrokerLog } from './contract.js';

/**
 * Presence: which connection holds each client id, why each connection ended, and the lifecycle events that say so
 * (the event shapes and versionNumbers are local/presence-events.ts).
 *
 * The rule the cloud relies on: folding every lifecycle event the broker published, in any order, through the
 * presence ordering (versionNumber, a disconnect winning over its connect) leaves a client id connected iff the
 * broker holds a connection for it, with that connection's session. So the broker itself decides who holds a
 * client id, here, in one place and one order.
 *
 * INVARIANTS
 * - a connection that becomes ready (CONNACK sent) takes the client id from the one holding it (closed as
 *   DUPLICATE_CLIENTID) and gets the next, highest versionNumber; its `connected` is announced then;
 * - every connection that was announced is announced `disconnected` exactly once, when it ends, whichever way it
 *   ends (aedes's `clientDisconnect`, its socket's close, or stop), and no `connected` follows its end;
 * - the disconnect reason is the FIRST reason the broker gave for ending the connection (`endWith`); without one it
 *   is DUPLICATE_CLIENTID if a newer connection took the id over, CLIENT_INITIATED_DISCONNECT after an MQTT
 *   DISCONNECT, else CONNECTION_LOST.
 *
 * aedes's own duplicate-client-id handling cannot be relied on for this. Its registerClient closes the client it
 * finds registered under the id and registers the newcomer when that close completes, which is asynchronous for a
 * client with subscriptions; a client that finishes closing deletes whatever is registered under its id, even a
 * newer client. With several connections of one id at once, a newcomer's registration is deleted by the client it
 * replaced, the next newcomer finds nobody to close, and two connections stay up; the one left out of aedes's
 * registry then ends without aedes emitting `clientDisconnect`, so its `disconnected` never went out and the robot
 * stayed online with no connection. Hence the takeover here and `ended` on the socket's close as well.
 */

/** What presence knows about one TLS connection beyond what aedes keeps. */
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

export type LifecycleEventOut = ConnectedLifecycleEvent | DisconnectedLifecycleEvent;

export class Presence {
  private readonly connections = new WeakMap<Client, Connection>();
  /** Per client id, the connection holding it: the last one to become ready. */
  private readonly live = new Map<string, Client>();
  /** Connections whose `connected` went out and whose `disconnected` has not yet. */
  private readonly announced = new Set<Client>();
  private readonly versions = new LifecycleVersions();

  constructor(
    private readonly log: BrokerLog,
    /** Publishes a lifecycle event; called synchronously, in the order the connections changed. */
    private readonly announce: (event: LifecycleEventOut) => void,
  ) {}

  /** A verified TLS connection was handed to aedes. */
  opened(client: Client, ipAddress: string | undefined): void {
    this.connections.set(client, { ipAddress });
  }

  /** The client was admitted with this certificate; a connection holding its id is marked as being taken over. */
  admitted(client: Client, certificateId: string): void {
    this.connectionOf(client).certificateId = certificateId;
    const previous = this.live.get(client.id);
    if (previous && previous !== client) this.connectionOf(previous).takenOverBy = client;
  }

  /** Records why the broker ends the connection, unless it already gave a reason. */
  endWith(client: Client, reason: DisconnectReason): void {
    this.connectionOf(client).reason ??= reason;
  }

  /** aedes reported an error on the connection. */
  clientError(client: Client, error: Error): void {
    const connection = this.connections.get(client);
    // A socket error (ECONNRESET…) is a lost connection; anything else (a malformed packet) is the client's error.
    if (connection && connection.reason === undefined && !(error as NodeJS.ErrnoException).code) connection.reason = 'CLIENT_ERROR';
  }

  /** aedes sent the CONNACK. `stopping`: stop() has already taken its list of connections to close. */
  ready(client: Client, stopping: boolean): void {
    const connection = this.connections.get(client);
    if (client.closed || client.conn.destroyed || !connection?.certificateId || connection.ended) return;
    if (stopping) {
      // Too late to announce.
      client.close();
      return;
    }
    const previous = this.live.get(client.id);
    if (previous && previous !== client) {
      const replaced = this.connectionOf(previous);
      replaced.takenOverBy = client;
      if (!previous.closed) {
        replaced.reason ??= 'DUPLICATE_CLIENTID';
        this.log({ level: 'info', message: 'Client id taken over by a newer connection: closing the older one', clientId: client.id });
        previous.close();
      }
    }
    const session: PresenceSession = {
      clientId: client.id,
      sessionIdentifier: randomUUID(),
      principalIdentifier: connection.certificateId,
      ...(connection.ipAddress ? { ipAddress: connection.ipAddress } : {}),
      versionNumber: this.versions.next(client.id),
    };
    connection.session = session;
    this.live.set(client.id, client);
    this.announced.add(client);
    this.log({ level: 'info', message: 'Robot connected', clientId: client.id, versionNumber: session.versionNumber });
    this.announce(connectedEvent(session, Date.now()));
  }

  /**
   * A connection is over: called when aedes unregisters the client and when its socket closes (aedes does not
   * always do the former, see above), and by stop(); whichever comes first counts.
   */
  ended(client: Client): void {
    const connection = this.connections.get(client);
    if (!connection || connection.ended) return;
    connection.ended = true;
    this.announced.delete(client);
    if (!connection.session) return;
    if (this.live.get(client.id) === client) this.live.delete(client.id);
    const reason: DisconnectReason =
      connection.reason ??
      (connection.takenOverBy && !connection.takenOverBy.closed
        ? 'DUPLICATE_CLIENTID'
        : (client as unknown as { _disconnected?: boolean })._disconnected // aedes sets it on a DISCONNECT packet
          ? 'CLIENT_INITIATED_DISCONNECT'
          : 'CONNECTION_LOST');
    this.log({ level: 'info', message: 'Robot disconnected', clientId: client.id, reason, versionNumber: connection.session.versionNumber });
    this.announce(disconnectedEvent(connection.session, reason, Date.now()));
  }

  /**
   * For stop(): every connection holding a client id is to end with SERVER_INITIATED_DISCONNECT; returns every
   * announced connection, those still closing after a takeover included, so that each one's `disconnected` goes out
   * before the broker closes.
   */
  endAllForStop(): Client[] {
    for (const client of this.live.values()) this.endWith(client, 'SERVER_INITIATED_DISCONNECT');
    return [...this.announced];
  }

  connectedThings(): string[] {
    return [...this.live.keys()].sort();
  }

  /** The highest versionNumber issued (see LifecycleVersions). */
  highestVersion(): number {
    return this.versions.highest();
  }

  private connectionOf(client: Client): Connection {
    let connection = this.connections.get(client);
    if (!connection) {
      connection = { ipAddress: undefined };
      this.connections.set(client, connection);
    }
    return connection;
  }
}
