import {
  ConnectedLifecycleEvent,
  DisconnectedLifecycleEvent,
  type DISCONNECT_REASONS,
  type LifecycleEvent,
} from '../schemas/lifecycle.js';
import { topics } from '../schemas/topics.js';

/**
 * IoT Core's lifecycle (presence) messages as the local broker publishes them on
 * `$aws/events/presence/connected|disconnected/<clientId>`, with the fields the presence handler relies on, and the
 * per-client `versionNumber` that orders them.
 */

export type DisconnectReason = (typeof DISCONNECT_REASONS)[number];

/** What one MQTT connection of a client id is known by, from its connect to its disconnect. */
export interface PresenceSession {
  readonly clientId: string;
  /** A UUID per connection. */
  readonly sessionIdentifier: string;
  /** The certificate id (SHA-256 of the DER certificate), as IoT Core names the principal of an X.509 connection. */
  readonly principalIdentifier: string;
  readonly ipAddress?: string;
  /** Shared by the connect and its disconnect. */
  readonly versionNumber: number;
}

export function connectedEvent(session: PresenceSession, timestamp: number): ConnectedLifecycleEvent {
  return ConnectedLifecycleEvent.parse({
    clientId: session.clientId,
    timestamp,
    eventType: 'connected',
    sessionIdentifier: session.sessionIdentifier,
    principalIdentifier: session.principalIdentifier,
    ...(session.ipAddress ? { ipAddress: session.ipAddress } : {}),
    versionNumber: session.versionNumber,
  });
}

export function disconnectedEvent(session: PresenceSession, reason: DisconnectReason, timestamp: number): DisconnectedLifecycleEvent {
  return DisconnectedLifecycleEvent.parse({
    clientId: session.clientId,
    timestamp,
    eventType: 'disconnected',
    clientInitiatedDisconnect: reason === 'CLIENT_INITIATED_DISCONNECT',
    sessionIdentifier: session.sessionIdentifier,
    principalIdentifier: session.principalIdentifier,
    disconnectReason: reason,
    versionNumber: session.versionNumber,
  });
}

/** The topic IoT Core publishes a lifecycle event on. */
export function presenceTopicOf(event: LifecycleEvent): string {
  return event.eventType === 'connected' ? topics.presenceConnected(event.clientId) : topics.presenceDisconnected(event.clientId);
}

/**
 * Per client id, the versionNumber of each new connection: `max(previous + 1, floor(now / 1000))`.
 *
 * Why this formula: the presence handler orders a robot's events by versionNumber (a higher number is newer, a
 * disconnect wins over the connect with the same number), so the numbers must keep increasing, even across a
 * restart of the local cloud, and the broker keeps no file. Seconds since the epoch grow by themselves while the
 * broker is down, so a restarted broker starts above everything the previous one issued; `previous + 1` keeps them
 * strictly increasing when one client reconnects several times within a second. A restart within the same second
 * could still repeat a number (or a burst of reconnects may have run ahead of the clock), so the broker's stop()
 * waits until the clock has passed `highest()` (see local/iot-broker.ts). IoT Core's own numbers are small and
 * reset after about an hour offline; the presence ordering copes with both (functions/domain/presence.ts).
 */
export class LifecycleVersions {
  private readonly last = new Map<string, number>();
  private top = 0;

  next(clientId: string, nowMs: number = Date.now()): number {
    const previous = this.last.get(clientId) ?? 0;
    const version = Math.max(previous + 1, Math.floor(nowMs / 1000));
    this.last.set(clientId, version);
    this.top = Math.max(this.top, version);
    return version;
  }

  /** The highest number issued so far (0 if none). */
  highest(): number {
    return this.top;
  }
}
